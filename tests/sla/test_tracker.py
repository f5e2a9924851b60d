"""The tracker and response targets: due times on rows, the *Breaching soon* view, its order,
and snoozed tickets out of the open views; at the tracker's fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from issues.models import Issue
from issues.services import issue_snooze, service_desk_ticket_create
from sla.models import ResponseClock, ResponsePolicy
from tests.factories import LabelFactory
from tests.issues.test_tracker import EXPECTED_QUERIES, add_issues, queries_for_page, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def labels(project) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {title: LabelFactory(project=project, title=title) for title in ("bug", "question")}


@pytest.fixture
def tickets(project, reporter) -> list[Issue]:  # type: ignore[no-untyped-def]
    ResponsePolicy.objects.create(project=project, enabled=True, first_response_minutes=60)
    return [
        service_desk_ticket_create(
            project=project, user=reporter, email=f"c{n}@customer.example", title=f"Ticket {n}"
        )
        for n in range(4)
    ]


def due_in(issue: Issue, minutes: int, *, warned: bool = False) -> None:
    now = timezone.now()
    ResponseClock.objects.filter(issue=issue).update(
        due_at=now + timedelta(minutes=minutes), warned_at=now if warned else None
    )


def titles(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [row.issue.title for row in response.context["page"].object_list]


def test_breaching_soon_lists_overdue_then_warned_tickets_soonest_first(
    client, tickets, reporter
) -> None:  # type: ignore[no-untyped-def]
    first, second, third, fourth = tickets
    due_in(first, 20, warned=True)
    due_in(second, -120)  # overdue 2 h
    due_in(third, 300)  # not near yet
    issue_snooze(issue=fourth, user=reporter, until=None)  # paused: no due time
    client.force_login(reporter)
    response = client.get(url(first.project), {"view": "breaching", "sort": "due"})
    assert titles(response) == ["Ticket 1", "Ticket 0"]
    page = response.content.decode()
    assert "overdue 2 h" in page
    assert "due in 19 min" in page or "due in 20 min" in page
    assert response.context["tracker"].counts["breaching"] == 2
    # Sorted by due time in the Open tab: the paused one last.
    response = client.get(url(first.project), {"sort": "due", "state": "all"})
    assert titles(response) == ["Ticket 1", "Ticket 0", "Ticket 2", "Ticket 3"]


def test_snoozed_tickets_leave_the_open_views_until_they_wake(client, tickets, reporter) -> None:  # type: ignore[no-untyped-def]
    issue_snooze(issue=tickets[0], user=reporter, until=timezone.now() + timedelta(days=1))
    client.force_login(reporter)
    project = tickets[0].project
    response = client.get(url(project))
    assert "Ticket 0" not in titles(response)
    assert response.context["tracker"].counts["opened"] == 3
    assert "Ticket 0" not in titles(client.get(url(project), {"view": "waiting"}))
    snoozed = client.get(url(project), {"view": "snoozed"})
    assert titles(snoozed) == ["Ticket 0"]
    assert snoozed.context["tracker"].counts["snoozed"] == 1
    assert "Ticket 0" in titles(client.get(url(project), {"state": "all"}))


@pytest.mark.parametrize(
    "params", [{"view": "breaching", "sort": "due"}, {"view": "snoozed"}, {"sort": "due"}]
)
def test_the_new_views_cost_the_trackers_queries(
    client, project, labels, owner, developer, reporter, params
) -> None:  # type: ignore[no-untyped-def]
    team = [owner, developer, reporter]
    client.force_login(reporter)

    def mark() -> None:
        now = timezone.now()
        issues = list(Issue.objects.filter(project=project, snoozed_at=None))
        ResponseClock.objects.bulk_create(
            [
                ResponseClock(issue=issue, project=project, kind="first", started_at=now,
                              target_seconds=3600, running_since=now,
                              due_at=now - timedelta(minutes=issue.iid))
                for issue in issues if issue.iid % 2 and not hasattr(issue, "response_clock")
            ],
            ignore_conflicts=True,
        )  # fmt: skip
        Issue.objects.filter(project=project, iid__gt=0).exclude(iid__regex=r"[13579]$").update(
            snoozed_at=now
        )

    add_issues(project, 10, team=team, labels=[*labels.values()])
    mark()
    small = queries_for_page(client, project, params)
    add_issues(project, 990, team=team, labels=[*labels.values()])
    mark()
    large = queries_for_page(client, project, params)
    assert small == large == EXPECTED_QUERIES["reporter"]
