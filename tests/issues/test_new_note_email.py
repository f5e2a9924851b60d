"""The *new note* email: who gets it, and the headers that keep it in the customer's thread and
bring their answer back (as received by a real SMTP server)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from issues.models import EmailParticipant, Issue, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status
REQUESTER = "jake@customer.example"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


@pytest.fixture
def issue(project) -> Issue:  # type: ignore[no-untyped-def]
    """An email issue from jake, Cc boss and ann; its first emails already out of the way."""
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=to, headers={"Cc": "boss@customer.example, ann@customer.example"}))
    assert row.outcome == "issue_created", row.reason
    OutboundEmail.objects.exclude(kind="team").all().delete()
    return Issue.objects.get(pk=row.issue_id)


def send_pending() -> dict[int, str]:
    ids = list(
        OutboundEmail.objects.exclude(kind="team")
        .filter(status=Status.PENDING)
        .values_list("pk", flat=True)
    )
    claimed, token = outbound_claim(ids)
    return outbound_send(claimed, token)


def team_comment(client, reporter, issue: Issue, body: str) -> None:  # type: ignore[no-untyped-def]
    client.force_login(reporter)
    url = reverse("note_add", args=[issue.project.full_path, issue.iid])
    assert client.post(url, {"body": body}).status_code == 302


def customer_reply(client, reporter, issue: Issue, body: str) -> None:  # type: ignore[no-untyped-def]
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    to = INCOMING.address_for(issue.project.service_desk.default_key)
    row = deliver(make_email(to=to, subject="Re: x", body=body, headers={"In-Reply-To": root}))
    assert row.outcome == "note_added", row.reason


def test_each_recipient_finds_their_own_reply_key_in_references(client, reporter, issue, smtp):
    team_comment(client, reporter, issue, "Fixed in 2.3.2.")
    emails = list(OutboundEmail.objects.exclude(kind="team").select_related("sent_notification"))
    assert sorted(e.recipient for e in emails) == [
        "ann@customer.example", "boss@customer.example", REQUESTER
    ]  # fmt: skip
    send_pending()
    received = {m.recipients[0]: m.message for m in smtp.wait_for(3)}
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    for email in emails:
        # A client that drops Reply-To still answers with References: the key brings it back.
        own = f"<reply-{email.sent_notification.reply_key}@servicedesk.test>"
        message = received[email.recipient]
        assert message["References"].split() == [root, own], email.recipient
        assert message["Message-ID"] == own
        assert message["In-Reply-To"] == root


@pytest.mark.parametrize("comment", [team_comment, customer_reply], ids=["team", "customer"])
def test_a_bouncing_participant_gets_no_new_note_email(client, reporter, issue, smtp, comment):
    EmailParticipant.objects.filter(issue=issue, email="boss@customer.example").update(
        bouncing_at=timezone.now()
    )
    comment(client, reporter, issue, "Any news?")
    expected = ["ann@customer.example"] + ([REQUESTER] if comment is team_comment else [])
    recipients = OutboundEmail.objects.exclude(kind="team").values_list("recipient", flat=True)
    assert sorted(recipients) == expected
    send_pending()
    assert sorted(m.recipients[0] for m in smtp.wait_for(len(expected))) == expected

    # "Clear bouncing": the next comment reaches them again.
    EmailParticipant.objects.filter(issue=issue).update(bouncing_at=None)
    OutboundEmail.objects.exclude(kind="team").all().delete()
    comment(client, reporter, issue, "And now?")
    assert "boss@customer.example" in OutboundEmail.objects.exclude(kind="team").values_list(
        "recipient", flat=True
    )
