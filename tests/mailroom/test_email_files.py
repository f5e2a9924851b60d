"""Files that come with emails: bounded in number, and each reply's note owns its own."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from issues.models import Issue, Note, OutboundEmail, SentNotification, Upload
from issues.outbox import outbound_claim, outbound_send
from mailroom.ledger import inbound_claim, inbound_process_batch, inbound_store
from mailroom.models import InboundMessage

from .helpers import ALIAS, INCOMING, deliver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def with_files(to: str, names: list[str], **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jake <jake@customer.example>"
    msg["To"] = to
    msg["Subject"] = "Logs"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Here are my files.")
    for name in names:
        msg.add_attachment(name.encode(), maintype="text", subtype="plain", filename=name)
    return msg.as_bytes()


@pytest.mark.parametrize("path", ["alone", "batch"])
def test_an_email_keeps_at_most_the_configured_number_of_files(settings, project, path) -> None:
    settings.SERVICEDESK_MAX_ATTACHMENTS_PER_EMAIL = 3
    raw = with_files(INCOMING.address_for(project.service_desk.default_key),
                     [f"part-{n}.txt" for n in range(5)])  # fmt: skip
    if path == "alone":
        row = deliver(raw)
    else:
        ids = [inbound_store(raw=raw, transport="test", enqueue=False).pk]
        ids.append(inbound_store(raw=raw.replace(b"Subject: Logs", b"Subject: Two"),
                                 transport="test", enqueue=False).pk)  # fmt: skip
        claimed, token = inbound_claim(ids)
        inbound_process_batch(claimed, token)
        row = InboundMessage.objects.get(pk=ids[0])
    assert row.outcome == "issue_created", row.reason
    issue = Issue.objects.get(pk=row.issue_id)
    names = sorted(Upload.objects.filter(issue=issue).values_list("filename", flat=True))
    assert names == ["part-0.txt", "part-1.txt", "part-2.txt"]
    assert "2 more attachments were not stored" in issue.description
    assert "part-3.txt" not in issue.description


def test_a_reply_note_owns_its_own_files_only_and_its_email_carries_only_them(
    project, smtp
) -> None:
    """The first email's files belong to the description; a reply with files of its own must
    not take them along (they would be emailed to the other participants)."""
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    to = INCOMING.address_for(project.service_desk.default_key)
    first = deliver(with_files(to, ["invoice.txt"], Cc="dana@customer.example"))
    issue = Issue.objects.get(pk=first.issue_id)
    key = (
        SentNotification.objects.filter(user=None)
        .get(issue=issue, recipient="jake@customer.example")
        .reply_key
    )
    OutboundEmail.objects.exclude(kind="team").all().delete()

    reply = deliver(with_files(INCOMING.address_for(key), ["screenshot.txt"]))
    assert reply.outcome == "note_added", reply.reason
    note = Note.objects.get(pk=reply.note_id)
    assert list(note.uploads.values_list("filename", flat=True)) == ["screenshot.txt"]
    invoice = Upload.objects.get(issue=issue, filename="invoice.txt")
    assert invoice.note_id is None

    [email] = OutboundEmail.objects.exclude(kind="team").filter(note=note)
    assert email.recipient == "dana@customer.example"
    claimed, token = outbound_claim([email.pk])
    outbound_send(claimed, token)
    [sent] = smtp.wait_for(1)
    files = [part.get_filename() for part in sent.message.iter_attachments()]
    assert files == ["screenshot.txt"]
