"""We are not a spam relay: automatic answers to forged or rotating senders are bounded."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from issues.models import EmailParticipant, Issue, Note, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from mailroom.ledger import inbound_claim, inbound_process_batch, inbound_store

from .helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


@pytest.fixture
def to(project) -> str:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key)


def process_as_batch(raws: list[bytes]) -> list:  # type: ignore[type-arg]
    ids = [inbound_store(raw=raw, transport="test", enqueue=False).pk for raw in raws]
    claimed, token = inbound_claim(ids)
    inbound_process_batch(claimed, token)
    from mailroom.models import InboundMessage

    return list(InboundMessage.objects.filter(pk__in=ids).order_by("pk"))


def without_sender(to: str, subject: str) -> bytes:
    return f"To: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nhello\r\n".encode()


@pytest.mark.parametrize("path", ["alone", "batch"])
def test_spellings_of_one_mailbox_share_the_new_issue_limit(
    settings, to, rate_window_frozen, path
) -> None:
    settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE = 2
    senders = ["jake+1@customer.example", "JAKE+2@Customer.Example", "jake@customer.example"]
    emails = [make_email(to=to, sender=s, subject=f"Buy now {n}") for n, s in enumerate(senders)]
    rows = [deliver(e) for e in emails] if path == "alone" else process_as_batch(emails)
    assert [r.outcome for r in rows] == ["issue_created", "issue_created", "rejected"]
    assert rows[2].reason == "rate limited"


@pytest.mark.parametrize("path", ["alone", "batch"])
def test_mail_without_any_sender_is_rate_limited_too(
    settings, to, rate_window_frozen, path
) -> None:
    settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE = 2
    emails = [without_sender(to, f"nobody-{n}") for n in range(3)]
    rows = [deliver(e) for e in emails] if path == "alone" else process_as_batch(emails)
    assert [r.outcome for r in rows] == ["issue_created", "issue_created", "rejected"]
    assert not rows[2].rejection_notice_due  # nobody to tell


def test_rejection_notices_count_against_the_outbound_limit(settings) -> None:
    """ "[Rejected]" notices to unknown addresses count against the instance's hourly limit."""
    settings.SERVICEDESK_OUTBOUND_EMAILS_PER_PROJECT_PER_HOUR = 2
    for n in range(3):
        to = INCOMING.address_for(f"nope-{n}-issue-")
        row = deliver(make_email(to=to, sender=f"victim{n}@else.example", subject=f"Pills {n}"))
        assert row.rejection_notice_due
    notices = list(
        OutboundEmail.objects.exclude(kind="team")
        .filter(kind="rejected")
        .values_list("pk", flat=True)
    )
    assert len(notices) == 3
    claimed, token = outbound_claim(notices)
    assert sorted(outbound_send(claimed, token).values()) == [
        Status.PENDING, Status.SENT, Status.SENT,
    ]  # fmt: skip


def test_one_notice_per_mailbox_whatever_its_spelling() -> None:
    for n, sender in enumerate(["victim+a@else.example", "Victim+b@Else.Example"]):
        deliver(make_email(to=INCOMING.address_for(f"nope-{n}-issue-"), sender=sender))
    assert OutboundEmail.objects.exclude(kind="team").filter(kind="rejected").count() == 1


FORGED = (
    "mx.appmail.adventuretime.ooo; spf=fail smtp.mailfrom=victim.example; dkim=none; "
    "dmarc=fail (p=reject) header.from=victim.example"
)


@pytest.mark.parametrize("path", ["alone", "batch"])
def test_forged_sender_gets_no_thank_you_and_the_team_is_told(to, path) -> None:
    email = make_email(to=to, sender="ceo@victim.example", subject="Wire the money",
                       headers={"Authentication-Results": FORGED})  # fmt: skip
    [row] = [deliver(email)] if path == "alone" else process_as_batch([email])[:1]
    assert row.outcome == "issue_created"
    assert row.decision["authentication"] == "DMARC failed for victim.example"
    assert not OutboundEmail.objects.exclude(kind="team").exists()
    [note] = Note.objects.filter(issue_id=row.issue_id, system=True)
    assert note.internal
    assert "DMARC failed for victim.example" in note.body


def test_forged_sender_gets_no_rejection_notice() -> None:
    row = deliver(make_email(to=INCOMING.address_for("nope-1-issue-"), sender="ceo@victim.example",
                             headers={"Authentication-Results": FORGED}))  # fmt: skip
    assert row.outcome == "rejected"
    assert not row.rejection_notice_due
    assert not OutboundEmail.objects.exclude(kind="team").exists()


@pytest.mark.parametrize(
    "results",
    [
        # Written by the sender below our server's own: only the topmost trusted one counts.
        ["mx.appmail.adventuretime.ooo; dmarc=pass header.from=victim.example", FORGED],
        # Not our server.
        ["mx.evil.example; dmarc=fail header.from=victim.example"],
        # Passed.
        ["mx.appmail.adventuretime.ooo; spf=fail smtp.mailfrom=victim.example; "
         "dkim=pass header.d=victim.example"],
    ],
)  # fmt: skip
def test_thank_you_goes_unless_our_server_saw_a_forgery(to, results) -> None:
    email = make_email(to=to, sender="ceo@victim.example")
    email = "".join(f"Authentication-Results: {r}\r\n" for r in results).encode() + email
    row = deliver(email)
    assert row.outcome == "issue_created"
    assert list(OutboundEmail.objects.exclude(kind="team").values_list("kind", flat=True)) == [
        "thank_you"
    ]


def test_turned_off_the_thank_you_goes_whatever_the_verdict(settings, to) -> None:
    settings.SERVICEDESK_AUTO_REPLY_NEEDS_AUTH = False
    deliver(make_email(to=to, sender="ceo@victim.example",
                       headers={"Authentication-Results": FORGED}))  # fmt: skip
    assert list(OutboundEmail.objects.exclude(kind="team").values_list("kind", flat=True)) == [
        "thank_you"
    ]


@pytest.mark.parametrize("path", ["alone", "batch"])
def test_our_own_address_in_reply_to_never_becomes_a_participant(to, path) -> None:
    email = make_email(to=to, headers={"Reply-To": INCOMING.address_for("0" * 32)})
    [row] = [deliver(email)] if path == "alone" else process_as_batch([email])[:1]
    issue = Issue.objects.get(pk=row.issue_id)
    assert issue.service_desk_reply_to == ""
    assert list(EmailParticipant.objects.filter(issue=issue).values_list("email", flat=True)) == [
        "jake@customer.example"
    ]


def test_our_own_addresses_in_cc_never_become_participants(project, to) -> None:
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    ours = [
        INCOMING.base_address,  # the mailbox itself, without a key
        "SUPPORT@servicedesk.test",  # our sending address
        ALIAS.address_for("acme-game-x"),  # any key address of a mailbox
    ]
    row = deliver(make_email(to=to, headers={"Cc": ", ".join([*ours, "dana@customer.example"])}))
    participants = EmailParticipant.objects.filter(issue_id=row.issue_id)
    assert sorted(participants.values_list("email", flat=True)) == [
        "dana@customer.example", "jake@customer.example",
    ]  # fmt: skip


def test_remote_images_in_a_customers_text_never_reach_other_peoples_email(project, to) -> None:
    """A tracking pixel in a reply must not be loaded by the other participants' mail clients
    through our email: it becomes a link."""
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    row = deliver(make_email(to=to, headers={"Cc": "dana@customer.example"}))
    from issues.models import SentNotification

    key = SentNotification.objects.filter(user=None).get(
        issue_id=row.issue_id, recipient="jake@customer.example"
    )
    OutboundEmail.objects.exclude(kind="team").all().delete()
    pixel = "https://tracker.evil.example/open.gif?who=dana"
    reply = EmailMessage()
    reply["From"], reply["To"] = "jake@customer.example", INCOMING.address_for(key.reply_key)
    reply["Subject"] = "Re: Help please"
    reply.set_content(f'<p>Look at our <img src="{pixel}" alt="logo"></p>', subtype="html")
    row = deliver(reply.as_bytes())
    assert "![logo](" in Note.objects.get(pk=row.note_id).body  # kept on the issue
    [email] = OutboundEmail.objects.exclude(kind="team").filter(kind="new_note")
    assert email.recipient == "dana@customer.example"
    assert "<img" not in email.body_html
    assert f'href="{pixel}"' in email.body_html.replace("&amp;", "&")
