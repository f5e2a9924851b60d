"""What the SMTP server answers decides what happens to an email: a 4xx (greylisting, a busy
mailbox) is tried again later, a 5xx is final, and after SERVICEDESK_OUTBOUND_MAX_ATTEMPTS a
temporary failure is final too. Against a real SMTP server that answers so."""

from __future__ import annotations

import pytest
from django.utils import timezone

from issues.models import Issue, OutboundEmail
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
def thank_you(project) -> OutboundEmail:  # type: ignore[no-untyped-def]
    """The thank-you of a new email issue, waiting to be sent."""
    row = deliver(make_email(to=INCOMING.address_for(project.service_desk.default_key)))
    assert row.outcome == "issue_created", row.reason
    return OutboundEmail.objects.exclude(kind="team").get(issue=Issue.objects.get(pk=row.issue_id))


def send_pending() -> dict[int, str]:
    ids = list(
        OutboundEmail.objects.exclude(kind="team")
        .filter(status=Status.PENDING)
        .values_list("pk", flat=True)
    )
    claimed, token = outbound_claim(ids)
    return outbound_send(claimed, token)


def make_due(email: OutboundEmail) -> None:
    """The backoff has passed (instead of waiting for it)."""
    OutboundEmail.objects.exclude(kind="team").filter(pk=email.pk).update(
        next_attempt_at=timezone.now()
    )


@pytest.mark.parametrize(
    ("stage", "answer"),
    [
        ("RCPT", "450 4.2.1 Mailbox busy, try later"),
        ("RCPT", "451 4.7.1 Greylisted, try later"),
        ("DATA", "450 4.2.1 Mailbox busy, try later"),
        ("DATA", "451 4.7.1 Greylisted, try later"),
    ],
)
def test_a_temporary_refusal_is_tried_again_after_a_backoff(smtp, thank_you, stage, answer):
    smtp.answer(REQUESTER, answer, at=stage)
    assert send_pending() == {thank_you.pk: Status.PENDING}
    thank_you.refresh_from_db()
    assert thank_you.attempts == 1
    assert thank_you.next_attempt_at > timezone.now()
    assert answer.split(" ", 2)[2] in thank_you.last_error  # the server's own words
    assert outbound_claim([thank_you.pk])[0] == []  # not before its backoff
    assert smtp.messages == []

    smtp.clear()  # the greylisting period is over
    make_due(thank_you)
    assert send_pending() == {thank_you.pk: Status.SENT}
    [captured] = smtp.wait_for(1)
    assert captured.recipients == [REQUESTER]
    thank_you.refresh_from_db()
    assert (thank_you.status, thank_you.attempts, thank_you.last_error) == (Status.SENT, 2, "")


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_a_permanent_refusal_fails_at_once_with_the_servers_reason(smtp, thank_you, stage):
    smtp.answer(REQUESTER, "550 5.1.1 <jake@customer.example>: no such user here", at=stage)
    assert send_pending() == {thank_you.pk: Status.FAILED}
    thank_you.refresh_from_db()
    assert thank_you.status == Status.FAILED
    assert thank_you.attempts == 1
    assert thank_you.next_attempt_at is None
    assert "550" in thank_you.last_error
    assert "no such user here" in thank_you.last_error
    smtp.clear()
    assert outbound_claim([thank_you.pk])[0] == []  # never tried again
    assert smtp.messages == []


def test_a_temporary_refusal_on_the_last_attempt_gives_up_with_the_last_error(
    smtp, thank_you, settings
) -> None:
    settings.SERVICEDESK_OUTBOUND_MAX_ATTEMPTS = 3
    smtp.answer(REQUESTER, "451 4.7.1 Greylisted, try later", at="DATA")
    for attempt in (1, 2):
        assert send_pending() == {thank_you.pk: Status.PENDING}
        thank_you.refresh_from_db()
        assert thank_you.attempts == attempt
        make_due(thank_you)
    assert send_pending() == {thank_you.pk: Status.FAILED}
    thank_you.refresh_from_db()
    assert thank_you.status == Status.FAILED
    assert thank_you.attempts == 3
    assert thank_you.next_attempt_at is None
    assert thank_you.last_error.startswith("gave up after 3 attempts: ")
    assert "451" in thank_you.last_error
    assert "Greylisted, try later" in thank_you.last_error
    assert outbound_claim([thank_you.pk])[0] == []
    assert smtp.messages == []
