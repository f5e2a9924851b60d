"""Response clocks on a frozen clock, driven through the issue services that move them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from accounts.models import User
from accounts.selectors import support_bot
from issues.models import Issue, Label
from issues.services import (
    issue_assignees_set,
    issue_close,
    issue_labels_change,
    issue_reopen,
    note_create,
    service_desk_ticket_create,
)
from notifications.models import Event
from projects.models import Project
from sla.models import Kind, LabelTarget, ResponseClock, ResponsePolicy, ResponseRecord
from sla.services import clock_paused, clock_resumed, clocks_sweep, policy_update

BERLIN = ZoneInfo("Europe/Berlin")
pytestmark = pytest.mark.django_db


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    # Wednesday 2 December 2026, 10:00 in Berlin.
    with time_machine.travel(berlin(2026, 12, 2, 10), tick=False) as traveller:
        yield traveller


@pytest.fixture
def policy(project: Project) -> ResponsePolicy:
    return ResponsePolicy.objects.create(
        project=project,
        enabled=True,
        first_response_minutes=4 * 60,
        next_response_minutes=8 * 60,
        warn_minutes=30,
        time_zone="Europe/Berlin",
        weekly_hours="Mon-Fri 09:00-17:00",
        holidays="2026-12-24\n2026-12-25",
    )


def ticket(project: Project, by: User) -> Issue:
    return service_desk_ticket_create(
        project=project, user=by, email="jake@customer.example", title="It broke"
    )


def customer_says(issue: Issue, text: str = "Any news?") -> None:
    note_create(
        issue=issue, author=support_bot(), body=text, external_author="jake@customer.example"
    )


def running(issue: Issue) -> ResponseClock:
    return ResponseClock.objects.get(issue=issue)


def test_a_customer_ticket_starts_a_first_response_clock(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    found = running(issue)
    assert found.kind == Kind.FIRST
    assert found.target_seconds == 4 * 3600
    assert found.due_at == berlin(2026, 12, 2, 14)


def test_an_internal_note_does_not_stop_the_clock_a_public_answer_does(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    clock.shift(timedelta(hours=1))
    note_create(issue=issue, author=reporter, body="Looking into it", internal=True)
    assert running(issue).due_at == berlin(2026, 12, 2, 14)
    clock.shift(timedelta(hours=2))
    note_create(issue=issue, author=reporter, body="Fixed, try again")
    assert not ResponseClock.objects.filter(issue=issue).exists()
    [record] = ResponseRecord.objects.filter(issue=issue)
    assert (record.kind, record.business_seconds, record.met) == (Kind.FIRST, 3 * 3600, True)
    assert record.answered_at == berlin(2026, 12, 2, 13)


def test_the_customers_next_word_starts_a_next_response_clock_in_business_hours(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    note_create(issue=issue, author=reporter, body="Hello!")
    clock.move_to(berlin(2026, 12, 4, 15))  # Friday 15:00
    customer_says(issue)
    found = running(issue)
    assert found.kind == Kind.NEXT
    # 2 h on Friday, 6 h on Monday.
    assert found.due_at == berlin(2026, 12, 7, 15)
    customer_says(issue, "Hello??")  # the clock runs from the first unanswered message
    assert running(issue).due_at == berlin(2026, 12, 7, 15)


def test_an_answer_after_the_target_is_missed(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    clock.move_to(berlin(2026, 12, 3, 9, 30))  # 7.5 business hours later
    note_create(issue=issue, author=reporter, body="Sorry for the wait")
    [record] = ResponseRecord.objects.filter(issue=issue)
    assert (record.business_seconds, record.met) == (7.5 * 3600, False)


def test_holidays_and_the_weekend_do_not_count(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    clock.move_to(berlin(2026, 12, 23, 15))
    issue = ticket(policy.project, reporter)
    # 2 h on the 23rd; the 24th and 25th are holidays, the 26th and 27th a weekend.
    assert running(issue).due_at == berlin(2026, 12, 28, 11)


def test_the_due_time_follows_the_zone_across_the_change_to_summer_time(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    clock.move_to(berlin(2026, 3, 27, 16))  # Friday, still winter time
    issue = ticket(policy.project, reporter)
    assert running(issue).due_at == datetime(2026, 3, 30, 10, tzinfo=UTC)  # Monday 12:00 CEST


def test_closing_stops_the_clock_and_a_reopen_starts_a_fresh_next_response_clock(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    clock.shift(timedelta(hours=1))
    issue_close(issue=issue, user=reporter)
    assert not ResponseClock.objects.filter(issue=issue).exists()
    assert not ResponseRecord.objects.exists()  # closed within the target: nothing missed
    clock.move_to(berlin(2026, 12, 3, 11))
    issue_reopen(issue=issue, user=reporter)
    found = running(issue)
    assert (found.kind, found.started_at) == (Kind.NEXT, berlin(2026, 12, 3, 11))
    assert found.due_at == berlin(2026, 12, 4, 11)  # 8 business hours, the closed day not counted


def test_closing_after_the_target_records_it_missed(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    clock.shift(timedelta(hours=5))
    issue_close(issue=issue, user=reporter)
    [record] = ResponseRecord.objects.filter(issue=issue)
    assert (record.answered_at, record.met, record.business_seconds) == (None, False, 5 * 3600)


def test_a_customer_email_on_a_closed_ticket_starts_nothing(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    issue_close(issue=issue, user=reporter)
    issue.refresh_from_db()
    customer_says(issue, "Thanks!")
    assert not ResponseClock.objects.filter(issue=issue).exists()


def test_a_paused_clock_keeps_what_it_counted(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    clock.shift(timedelta(hours=1))
    clock_paused(issue, at=berlin(2026, 12, 2, 11))
    assert running(issue).due_at is None
    clock.move_to(berlin(2026, 12, 3, 16))
    clock_resumed(issue, at=berlin(2026, 12, 3, 16))
    # 1 h counted; 3 h left: 1 h on Thursday, 2 h on Friday morning.
    assert running(issue).due_at == berlin(2026, 12, 4, 11)
    clock.move_to(berlin(2026, 12, 4, 10))
    note_create(issue=issue, author=reporter, body="Done")
    [record] = ResponseRecord.objects.filter(issue=issue)
    assert (record.business_seconds, record.met) == (3 * 3600, True)


def test_a_label_with_a_stricter_target_applies_to_the_running_clock(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    high = Label.objects.create(project=policy.project, title="priority::high")
    LabelTarget.objects.create(
        policy=policy, label=high, first_response_minutes=60, next_response_minutes=120
    )
    issue = ticket(policy.project, reporter)
    clock.shift(timedelta(minutes=20))
    issue_labels_change(issue=issue, user=reporter, add=[high])
    found = running(issue)
    assert (found.target_seconds, found.due_at) == (3600, berlin(2026, 12, 2, 11))


def test_changing_the_hours_moves_running_clocks_and_switching_off_drops_them(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User
) -> None:
    issue = ticket(policy.project, reporter)
    clock.shift(timedelta(hours=1))
    policy.weekly_hours = "Mon-Fri 09:00-12:00"
    policy_update(policy=policy, fields=["weekly_hours"])
    # 1 h counted; 3 h left from 11:00: 1 h today, 2 h on Thursday morning.
    assert running(issue).due_at == berlin(2026, 12, 3, 11)
    policy.enabled = False
    policy_update(policy=policy, fields=["enabled"])
    assert not ResponseClock.objects.exists()


def test_no_targets_no_clock(
    clock: time_machine.Coordinates, project: Project, reporter: User
) -> None:
    ResponsePolicy.objects.create(project=project, enabled=False)
    ticket(project, reporter)
    assert not ResponseClock.objects.exists()


def test_the_sweep_warns_once_before_the_target_and_once_at_it(
    clock: time_machine.Coordinates, policy: ResponsePolicy, reporter: User, maintainer: User
) -> None:
    issue = ticket(policy.project, reporter)
    issue_assignees_set(issue=issue, user=maintainer, assignees=[reporter])
    Event.objects.all().delete()
    clock.move_to(berlin(2026, 12, 2, 13, 20))
    assert clocks_sweep() == (0, 0)
    clock.move_to(berlin(2026, 12, 2, 13, 31))
    assert clocks_sweep() == (1, 0)
    assert clocks_sweep() == (0, 0)
    clock.move_to(berlin(2026, 12, 2, 14, 1))
    assert clocks_sweep() == (0, 1)
    assert clocks_sweep() == (0, 0)
    assert sorted(Event.objects.values_list("kind", "state")) == [
        ("response_due", "missed"),
        ("response_due", "soon"),
    ]
