"""Snooze: out of the open views until a time or the customer's next email; a To-Do on waking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import translation

from accounts.selectors import support_bot
from issues.models import Issue, Note
from issues.quick_actions import apply_quick_actions
from issues.services import (
    issue_assignees_set,
    issue_snooze,
    issues_wake,
    note_create,
    service_desk_ticket_create,
)
from issues.snooze import SnoozeError, snooze_until
from notifications.models import Event, Todo
from notifications.services import events_deliver
from sla.models import ResponseClock, ResponsePolicy

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 2, 10, tzinfo=UTC)


@pytest.fixture
def clock():  # type: ignore[no-untyped-def]
    # English: quick actions answer in the active language, which an earlier request may
    # have left on.
    with translation.override("en"), time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ticket(project, reporter) -> Issue:  # type: ignore[no-untyped-def]
    return service_desk_ticket_create(
        project=project, user=reporter, email="jake@customer.example", title="It broke"
    )


def _customer_replies(issue: Issue) -> Note:
    return note_create(
        issue=issue,
        author=support_bot(),
        body="Still broken",
        external_author="jake@customer.example",
    )


def test_snoozing_until_a_time_and_waking_at_it(clock, ticket, reporter, maintainer) -> None:  # type: ignore[no-untyped-def]
    issue_assignees_set(issue=ticket, user=maintainer, assignees=[reporter])
    issue = issue_snooze(issue=ticket, user=maintainer, until=NOW + timedelta(days=3))
    assert issue.is_snoozed
    assert Note.objects.filter(
        issue=ticket, system=True, body="snoozed until 2026-12-05 10:00 UTC"
    ).exists()
    clock.shift(timedelta(days=2))
    assert issues_wake() == 0
    clock.shift(timedelta(days=1, minutes=1))
    assert issues_wake() == 1
    assert issues_wake() == 0
    ticket.refresh_from_db()
    assert not ticket.is_snoozed
    assert Note.objects.filter(issue=ticket, body="woke up: the snooze ended").exists()
    events_deliver()
    # The assignee (not whoever snoozed it) gets the To-Do.
    assert list(
        Todo.objects.filter(issue=ticket, action="snooze_ended").values_list(
            "user__username", flat=True
        )
    ) == ["bob"]


def test_a_customer_reply_wakes_a_snoozed_ticket_early(clock, ticket, maintainer) -> None:  # type: ignore[no-untyped-def]
    issue_snooze(issue=ticket, user=maintainer, until=None)
    ticket.refresh_from_db()
    _customer_replies(ticket)
    ticket.refresh_from_db()
    assert not ticket.is_snoozed
    assert Event.objects.filter(issue=ticket, kind="woke", state="reply").exists()
    events_deliver()
    # Unassigned: whoever snoozed it hears about it.
    assert list(
        Todo.objects.filter(issue=ticket, action="snooze_ended").values_list(
            "user__username", flat=True
        )
    ) == ["mia"]


def test_snooze_pauses_the_response_clock(clock, project, ticket, maintainer) -> None:  # type: ignore[no-untyped-def]
    ResponsePolicy.objects.create(project=project, enabled=True, first_response_minutes=60)
    issue = service_desk_ticket_create(
        project=project, user=maintainer, email="ann@customer.example", title="Help"
    )
    clock.shift(timedelta(minutes=20))
    issue_snooze(issue=issue, user=maintainer, until=None)
    assert ResponseClock.objects.get(issue=issue).due_at is None
    clock.shift(timedelta(hours=5))
    note_create(
        issue=issue, author=support_bot(), body="Hello?", external_author="ann@customer.example"
    )
    # 20 minutes counted before the snooze: 40 left from the customer's reply.
    assert ResponseClock.objects.get(issue=issue).due_at == NOW + timedelta(hours=5, minutes=60)


def test_the_quick_action_snoozes_for_a_span(clock, ticket, reporter) -> None:  # type: ignore[no-untyped-def]
    result = apply_quick_actions(issue=ticket, text="/snooze 3d\nBack on Saturday", user=reporter)
    assert result.applied == ["snoozed until 2026-12-05 10:00 UTC"]
    assert result.text == "Back on Saturday"
    ticket.refresh_from_db()
    assert ticket.snoozed_until == NOW + timedelta(days=3)
    result = apply_quick_actions(issue=ticket, text="/unsnooze", user=reporter)
    assert result.applied == ["unsnoozed"]


def test_a_guest_may_not_snooze(clock, ticket, guest) -> None:  # type: ignore[no-untyped-def]
    result = apply_quick_actions(issue=ticket, text="/snooze 1d", user=guest)
    assert result.refused == ["/snooze 1d: you may not snooze this issue"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3d", NOW + timedelta(days=3)),
        ("1w 2d", NOW + timedelta(days=9)),
        ("4h", NOW + timedelta(hours=4)),
        ("90m", NOW + timedelta(minutes=90)),
        ("reply", None),
        ("2026-12-10", datetime(2026, 12, 10, 9, tzinfo=UTC)),
        ("2026-12-10 14:30", datetime(2026, 12, 10, 14, 30, tzinfo=UTC)),
    ],
)
def test_snooze_times_as_people_write_them(clock, project, text, expected) -> None:  # type: ignore[no-untyped-def]
    assert snooze_until(text, project=project) == expected


def test_a_date_means_the_projects_morning(clock, project) -> None:  # type: ignore[no-untyped-def]
    ResponsePolicy.objects.create(project=project, time_zone="Asia/Tokyo")
    assert snooze_until("2026-12-10", project=project) == datetime(2026, 12, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "soon", "2026-12-01", "0h", "400d", "3 parsecs"])
def test_unreadable_or_past_snoozes_are_refused(clock, project, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SnoozeError):
        snooze_until(text, project=project)


def test_the_sidebar_snoozes_and_wakes(clock, client, project, ticket, reporter) -> None:  # type: ignore[no-untyped-def]
    client.force_login(reporter)
    url = reverse("issue_snooze", args=[project.full_path, ticket.iid])
    response = client.post(url, {"until": "3d", "custom": ""})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Snoozed until 2026-12-05 10:00" in page
    response = client.post(url, {"until": "3d", "custom": "yesterday"})
    assert response.status_code == 400
    client.post(url, {"wake": "1"})
    ticket.refresh_from_db()
    assert not ticket.is_snoozed
