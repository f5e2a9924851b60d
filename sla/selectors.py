"""What the dashboard shows of response targets: met and missed per week, and how long first
responses took (business time), in a fixed number of queries whatever the project's size."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q
from django.db.models.functions import TruncWeek
from django.utils import timezone

from projects.models import Project

from .models import Kind, ResponsePolicy, ResponseRecord

REPORT_WEEKS = 8
# Time to first response, in business hours: the distribution's buckets (upper bounds).
BUCKETS = [(1, "< 1 h"), (4, "1-4 h"), (8, "4-8 h"), (24, "8-24 h"), (None, "> 24 h")]


@dataclass(frozen=True)
class Week:
    start: dt.date
    met: int
    missed: int


@dataclass(frozen=True)
class ResponseReport:
    enabled: bool
    weeks: list[Week]
    first_responses: int
    p50: dt.timedelta | None
    p90: dt.timedelta | None
    buckets: list[tuple[str, int]]


def week_starts(today: dt.date, weeks: int) -> list[dt.date]:
    monday = today - dt.timedelta(days=today.weekday())
    return [monday - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


def _percentile(ordered: list[int], share: float) -> dt.timedelta | None:
    """Nearest-rank percentile (no interpolation: a time some ticket really took)."""
    if not ordered:
        return None
    rank = max(int(-(-share * len(ordered) // 1)) - 1, 0)
    return dt.timedelta(seconds=ordered[min(rank, len(ordered) - 1)])


def response_report(
    *, project: Project, weeks: int = REPORT_WEEKS, today: dt.date | None = None
) -> ResponseReport:
    """Three queries: the policy, the weekly met/missed counts, the first-response times."""
    today = today or timezone.localdate()
    starts = week_starts(today, weeks)
    since = timezone.make_aware(dt.datetime.combine(starts[0], dt.time.min))
    enabled = ResponsePolicy.objects.filter(project=project, enabled=True).exists()
    records = ResponseRecord.objects.filter(project=project, ended_at__gte=since)
    per_week = {
        (row["week"].date() if isinstance(row["week"], dt.datetime) else row["week"]): row
        for row in records.annotate(week=TruncWeek("ended_at"))
        .order_by()
        .values("week")
        .annotate(n_met=Count("pk", filter=Q(met=True)), n_missed=Count("pk", filter=Q(met=False)))
    }
    seconds = sorted(
        records.filter(kind=Kind.FIRST, answered_at__isnull=False).values_list(
            "business_seconds", flat=True
        )
    )
    buckets = []
    lower = 0
    for upper, label in BUCKETS:
        limit = upper * 3600 if upper is not None else None
        buckets.append(
            (label, sum(1 for s in seconds if s >= lower and (limit is None or s < limit)))
        )
        lower = limit or lower
    return ResponseReport(
        enabled=enabled,
        weeks=[
            Week(
                start,
                per_week.get(start, {}).get("n_met", 0),
                per_week.get(start, {}).get("n_missed", 0),
            )
            for start in starts
        ],
        first_responses=len(seconds),
        p50=_percentile(seconds, 0.5),
        p90=_percentile(seconds, 0.9),
        buckets=buckets,
    )
