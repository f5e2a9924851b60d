from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q
from django.db.models.functions import TruncWeek
from django.utils import timezone

from issues.models import Issue
from projects.models import Project
from sla.selectors import REPORT_WEEKS, week_starts

from .models import Rating, Score

RECENT_COMMENTS = 5


def satisfaction_latest(*, issue: Issue) -> Rating | None:
    """The customer's answer about the ticket's latest close (shown to Reporter+)."""
    return Rating.objects.filter(issue=issue).order_by("-closed_at").first()


@dataclass(frozen=True)
class SatisfactionWeek:
    start: dt.date
    good: int
    okay: int
    bad: int

    @property
    def answers(self) -> int:
        return self.good + self.okay + self.bad

    @property
    def score(self) -> int | None:
        """Share of good answers, in per cent (the usual CSAT score); None without answers."""
        return round(100 * self.good / self.answers) if self.answers else None


@dataclass(frozen=True)
class SatisfactionReport:
    weeks: list[SatisfactionWeek]
    comments: list[Rating]


def satisfaction_report(
    *, project: Project, weeks: int = REPORT_WEEKS, today: dt.date | None = None
) -> SatisfactionReport:
    """Two queries: answers per week (by when they were given), the latest comments."""
    today = today or timezone.localdate()
    starts = week_starts(today, weeks)
    since = timezone.make_aware(dt.datetime.combine(starts[0], dt.time.min))
    ratings = Rating.objects.filter(project=project, created_at__gte=since)
    rows = {
        (row["week"].date() if isinstance(row["week"], dt.datetime) else row["week"]): row
        for row in ratings.annotate(week=TruncWeek("created_at"))
        .order_by()
        .values("week")
        .annotate(**{score: Count("pk", filter=Q(score=score)) for score in Score.values})
    }
    comments = list(
        ratings.exclude(comment="")
        .select_related("issue")
        .order_by("-updated_at")[:RECENT_COMMENTS]
    )
    return SatisfactionReport(
        weeks=[
            SatisfactionWeek(start, *(rows.get(start, {}).get(score, 0) for score in Score.values))
            for start in starts
        ],
        comments=comments,
    )
