"""The project dashboard's numbers (SPEC §11): Service Desk tickets over the last days.

Pure reads. Per-day counts are aggregated in SQL (TruncDate + Count); the page costs the same
four queries whether the project has ten tickets or ten thousand.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone

from projects.models import Project

from .models import Issue, Note

DASHBOARD_DAYS = 30


@dataclass(frozen=True)
class DayStats:
    day: dt.date
    opened: int
    closed: int
    backlog: int  # open Service Desk issues at the end of the day


@dataclass(frozen=True)
class Dashboard:
    days: list[DayStats]
    opened: int
    closed: int
    open_now: int
    median_first_response: dt.timedelta | None
    responded: int  # tickets opened in the window that had a first response


def service_desk_issues(*, project: Project) -> QuerySet[Issue]:
    """Tickets: the project's issues that came by email (or were converted)."""
    return Issue.objects.filter(project=project).exclude(external_author="")


def _window_start(today: dt.date, days: int) -> dt.datetime:
    first = today - dt.timedelta(days=days - 1)
    return timezone.make_aware(dt.datetime.combine(first, dt.time.min))


def _count_per_day(issues: QuerySet[Issue], field: str, since: dt.datetime) -> dict[dt.date, int]:
    rows = (
        issues.filter(**{f"{field}__gte": since})
        .annotate(day=TruncDate(field))
        .order_by()
        .values("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    return dict(rows)


def first_response_note() -> QuerySet[Note]:
    """Notes that answer the customer: public, written by a human team member on the page —
    not the Support Bot, not a system note, not an email reply (SPEC §11)."""
    return Note.objects.filter(
        internal=False, system=False, external_author="", author__is_bot=False
    )


def first_response_times(*, project: Project, since: dt.datetime) -> list[dt.timedelta]:
    """For every ticket opened since ``since`` that was answered: creation → first response.

    One query: the first response's time is a correlated subquery (portable; PostgreSQL and
    SQLite differ on interval arithmetic, so the subtraction happens here)."""
    # The earliest such note by the partial index ``note_first_response`` (issue, created_at):
    # its first entry that a person wrote, not the MIN over every note of the thread.
    first = (
        first_response_note()
        .filter(issue=OuterRef("pk"))
        .order_by("created_at")
        .values("created_at")[:1]
    )
    rows = (
        service_desk_issues(project=project)
        .filter(created_at__gte=since)
        .annotate(first_response_at=Subquery(first))
        .filter(first_response_at__isnull=False)
        .order_by()
        .values_list("created_at", "first_response_at")
    )
    return [max(answered - created, dt.timedelta(0)) for created, answered in rows]


def _median(values: list[dt.timedelta]) -> dt.timedelta | None:
    # statistics.median is typed for numbers only; timedeltas add and halve the same way.
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def project_dashboard(
    *, project: Project, days: int = DASHBOARD_DAYS, today: dt.date | None = None
) -> Dashboard:
    """The dashboard of ``project`` for the ``days`` days up to ``today`` (local dates)."""
    today = today or timezone.localdate()
    since = _window_start(today, days)
    issues = service_desk_issues(project=project)
    opened = _count_per_day(issues, "created_at", since)
    # Reopening clears closed_at, so this counts the tickets that are still closed.
    closed = _count_per_day(issues.filter(state=Issue.State.CLOSED), "closed_at", since)
    open_now = issues.filter(state=Issue.State.OPENED).count()
    times = first_response_times(project=project, since=since)

    # The backlog at the end of each day, walking back from today's: yesterday's is today's
    # minus what opened today plus what closed today.
    dates = [today - dt.timedelta(days=offset) for offset in range(days)]
    backlog = open_now
    per_day: list[DayStats] = []
    for day in dates:
        per_day.append(DayStats(day, opened.get(day, 0), closed.get(day, 0), backlog))
        backlog = max(backlog - opened.get(day, 0) + closed.get(day, 0), 0)
    per_day.reverse()
    return Dashboard(
        days=per_day,
        opened=sum(d.opened for d in per_day),
        closed=sum(d.closed for d in per_day),
        open_now=open_now,
        median_first_response=_median(times),
        responded=len(times),
    )
