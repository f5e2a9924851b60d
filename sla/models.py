"""Response targets: how soon a project answers its customers, and each ticket's running clock.

A ticket's clock runs while the customer spoke last in public and the team has not answered: it
starts with the customer's message (the first one: a *first response* target; a later one, or a
reopen: a *next response* target), counts only the project's business hours, pauses while the
ticket is snoozed, and stops when the team answers in public (the answer is recorded as met or
missed) or the ticket is closed. Internal notes do not stop it.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from zoneinfo import ZoneInfo, available_timezones

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from issues.models import Issue, Label
from projects.models import Project

from .hours import BusinessHours, parse_holidays, parse_week


class Kind(models.TextChoices):
    FIRST = "first", _("first response")
    NEXT = "next", _("next response")


def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(available_timezones())]


class ResponsePolicy(models.Model):
    """A project's response targets and business hours (Maintainer+ edit them)."""

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="response_policy"
    )
    enabled = models.BooleanField(default=False)
    first_response_minutes = models.PositiveIntegerField(default=4 * 60)
    next_response_minutes = models.PositiveIntegerField(default=8 * 60)
    # "Breaching soon": how long before the target the tracker's view and the warning start.
    warn_minutes = models.PositiveIntegerField(default=60)
    time_zone = models.CharField(max_length=64, default="UTC")
    # As written by the maintainer (sla.hours.parse_week reads it); empty: round the clock.
    weekly_hours = models.TextField(blank=True, default="")
    holidays = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"response targets of {self.project_id}"

    @cached_property
    def hours(self) -> BusinessHours:
        if not self.weekly_hours.strip() and not self.holidays.strip():
            return BusinessHours(zone=ZoneInfo(self.time_zone))
        week = parse_week(self.weekly_hours) if self.weekly_hours.strip() else BusinessHours().week
        return BusinessHours(
            zone=ZoneInfo(self.time_zone), week=week, holidays=parse_holidays(self.holidays)
        )

    @property
    def warn(self) -> timedelta:
        return timedelta(minutes=self.warn_minutes)


class LabelTarget(models.Model):
    """Stricter (or looser) targets for tickets carrying a label, e.g. ~priority::high → 1 h.

    A ticket with several such labels gets the shortest of their targets."""

    policy = models.ForeignKey(ResponsePolicy, on_delete=models.CASCADE, related_name="labels")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    first_response_minutes = models.PositiveIntegerField()
    next_response_minutes = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["policy", "label"], name="label_target_once"),
        ]

    def __str__(self) -> str:
        return f"{self.label_id}: {self.first_response_minutes}/{self.next_response_minutes} min"


class ResponseClock(models.Model):
    """A ticket waiting for the team's public answer; gone once answered or closed."""

    issue = models.OneToOneField(
        Issue, primary_key=True, on_delete=models.CASCADE, related_name="response_clock"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    started_at = models.DateTimeField()  # the customer's message (or the reopen)
    target_seconds = models.PositiveIntegerField()
    # Business seconds counted before ``running_since``; the clock is paused when that is null.
    consumed_seconds = models.PositiveIntegerField(default=0)
    running_since = models.DateTimeField(null=True, blank=True)
    # When the target is reached if the clock keeps running; null while paused (or never, when
    # the project has no business hours left).
    due_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The tracker's sort and "Breaching soon" view: a project's running clocks by due time.
            models.Index(fields=["project", "due_at"], name="response_clock_due"),
            # The beat sweep: clocks due (or about to be) that nobody has been told about yet.
            models.Index(
                fields=["due_at"], condition=Q(breached_at=None), name="response_clock_unbreached"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} response clock of {self.issue_id}, due {self.due_at}"


class ResponseRecord(models.Model):
    """An answered (or, past its target, closed) response clock: the dashboard's history."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="response_records")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    started_at = models.DateTimeField()
    # When the team answered in public; null: closed without an answer after the target passed.
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField()
    business_seconds = models.PositiveIntegerField()
    target_seconds = models.PositiveIntegerField()
    met = models.BooleanField()

    class Meta:
        indexes = [models.Index(fields=["project", "ended_at"], name="response_record_week")]

    def __str__(self) -> str:
        return f"{self.kind} response of {self.issue_id}: {'met' if self.met else 'missed'}"
