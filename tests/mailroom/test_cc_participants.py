"""Cc'd addresses of a new email become participants, at most SERVICEDESK_MAX_PARTICIPANTS."""

from __future__ import annotations

import pytest

from issues.models import EmailParticipant, OutboundEmail
from mailroom.models import InboundMessage

from .helpers import ALIAS, INCOMING, deliver, deliver_together, make_email

pytestmark = pytest.mark.django_db
Outcome = InboundMessage.Outcome
REQUESTER = "jake@customer.example"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}


@pytest.mark.parametrize("together", [False, True], ids=["alone", "in a batch"])
def test_more_cc_than_the_limit_makes_exactly_the_limit_requester_included(
    project, settings, together
) -> None:
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    limit = settings.SERVICEDESK_MAX_PARTICIPANTS
    cc = [f"cc{i:02d}@customer.example" for i in range(limit + 3)]
    address = INCOMING.address_for(project.service_desk.default_key)
    raw = make_email(to=address, headers={"Cc": ", ".join(cc)})
    if together:
        other = make_email(to=address, subject="Unrelated", sender="finn@customer.example")
        row = deliver_together([raw, other])[0]
    else:
        row = deliver(raw)
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason

    participants = set(
        EmailParticipant.objects.filter(issue_id=row.issue_id).values_list("email", flat=True)
    )
    assert len(participants) == limit
    # The requester first, then the Cc'd addresses in the order the email lists them.
    assert participants == {REQUESTER, *cc[: limit - 1]}
    # Each participant is told once (thank-you or new participant); the rest get nothing.
    recipients = (
        OutboundEmail.objects.exclude(kind="team")
        .filter(issue_id=row.issue_id)
        .values_list("recipient", flat=True)
    )
    assert sorted(recipients) == sorted(participants)
