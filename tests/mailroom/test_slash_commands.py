"""Slash commands written by a customer never run: a reply's `/close` stays text (SPEC §4).

The project's own description templates may run quick actions; nothing that came by email may,
whichever way the reply found its issue and however the worker processed it.
"""

from __future__ import annotations

import pytest

from issues.models import Issue, Note, SentNotification
from mailroom.models import InboundMessage
from projects.models import Role
from tests.factories import LabelFactory, member

from .helpers import ALIAS, INCOMING, deliver, deliver_together, make_email

pytestmark = pytest.mark.django_db
Outcome = InboundMessage.Outcome
COMMANDS = ("/close", "/label ~x", "/assign @bob", "/confidential")
REPLY = "Thanks, that helped.\n/close\n/label ~x\n  /assign @bob\n/confidential\nBye for now"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}


@pytest.fixture
def address(project) -> str:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key)


@pytest.fixture
def issue(project, address) -> Issue:  # type: ignore[no-untyped-def]
    """An open, public email issue where each command would show: label ~x exists, bob could be
    assigned."""
    LabelFactory(project=project, title="x")
    member(project, Role.REPORTER, "bob")
    project.service_desk.tickets_confidential_by_default = False
    project.service_desk.save()
    row = deliver(make_email(to=address, subject="Help", message_id="<help@customer.example>"))
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    issue = Issue.objects.get(pk=row.issue_id)
    assert (issue.state, issue.confidential) == ("opened", False)
    return issue


def reply_by_reply_key(issue: Issue, address: str) -> bytes:
    """An answer to the thank-you: its Reply-To address carries the reply key."""
    key = SentNotification.objects.filter(user=None).get(issue=issue).reply_key
    return make_email(to=INCOMING.address_for(key), subject="Re: Help", body=REPLY)


def reply_by_in_reply_to(issue: Issue, address: str) -> bytes:
    """A new email to the project's address naming the thank-you in In-Reply-To."""
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    return make_email(to=address, subject="Re: Help", body=REPLY, headers={"In-Reply-To": root})


@pytest.mark.parametrize("together", [False, True], ids=["alone", "in a batch"])
@pytest.mark.parametrize("reply", [reply_by_reply_key, reply_by_in_reply_to],
                         ids=["reply key", "In-Reply-To"])  # fmt: skip
def test_slash_commands_in_a_reply_stay_inert_text(project, address, issue, reply, together):
    raw = reply(issue, address)
    if together:  # beside another email, as a worker takes them from a backlog
        other = make_email(to=address, subject="Unrelated", sender="finn@customer.example")
        row, neighbour = deliver_together([raw, other])
        assert neighbour.outcome == Outcome.ISSUE_CREATED, neighbour.reason
    else:
        row = deliver(raw)
    assert row.outcome == Outcome.NOTE_ADDED, row.reason
    assert row.issue_id == issue.pk
    note = Note.objects.get(pk=row.note_id)
    for command in COMMANDS:  # kept, as inline code: shown, never run
        assert f"`{command}`" in note.body, note.body
    assert note.body.startswith("Thanks, that helped.")
    assert note.body.endswith("Bye for now")
    issue.refresh_from_db()
    assert issue.state == "opened"
    assert not issue.confidential
    assert not issue.labels.exists()
    assert not issue.assignees.exists()
