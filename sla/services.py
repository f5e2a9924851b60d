"""Response clocks: started, paused, resumed and stopped in the transaction of their cause.

``issues.services`` reports who spoke last in public (``clocks_spoken``, a batch: the mailroom
creates tickets and notes many at a time), closes and reopens (``clock_closed``,
``clock_reopened``), label changes (``clocks_retarget``); snooze pauses and resumes
(``clock_paused``, ``clock_resumed``). Each costs one query when the project has no targets
switched on, and a fixed few for a batch when it has. ``clocks_sweep`` (beat, every minute)
warns before a target is missed and says when it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from issues.models import Issue, Speaker

from .models import Kind, LabelTarget, ResponseClock, ResponsePolicy, ResponseRecord

SWEEP_AHEAD = timedelta(days=1)  # no project warns earlier than this (the form's limit)


def _policies(project_ids: Iterable[int]) -> dict[int, ResponsePolicy]:
    return {
        policy.project_id: policy
        for policy in ResponsePolicy.objects.filter(project_id__in=set(project_ids), enabled=True)
    }


def _targets(policy: ResponsePolicy, issue_ids: Iterable[int], kind: str) -> dict[int, int]:
    """Each issue's target in seconds: its labels' shortest, else the project's."""
    field = "first_response_minutes" if kind == Kind.FIRST else "next_response_minutes"
    default = getattr(policy, field)
    by_label = dict(
        LabelTarget.objects.filter(policy=policy, label__issues__in=list(issue_ids))
        .values("label__issues")
        .annotate(shortest=Min(field))
        .values_list("label__issues", "shortest")
    )
    return {pk: 60 * by_label.get(pk, default) for pk in issue_ids}


def _clock(
    policy: ResponsePolicy, issue: Issue, kind: str, at: datetime, target: int
) -> ResponseClock:
    return ResponseClock(
        issue=issue,
        project_id=issue.project_id,
        kind=kind,
        started_at=at,
        target_seconds=target,
        running_since=at,
        due_at=policy.hours.add(at, target),
    )


def _consumed(policy: ResponsePolicy, clock: ResponseClock, at: datetime) -> int:
    running = policy.hours.seconds_between(clock.running_since, at) if clock.running_since else 0
    return clock.consumed_seconds + running


def _record(
    policy: ResponsePolicy, clock: ResponseClock, at: datetime, *, answered: bool
) -> ResponseRecord:
    spent = _consumed(policy, clock, at)
    return ResponseRecord(
        project_id=clock.project_id,
        issue_id=clock.issue_id,
        kind=clock.kind,
        started_at=clock.started_at,
        answered_at=at if answered else None,
        ended_at=at,
        business_seconds=spent,
        target_seconds=clock.target_seconds,
        met=spent <= clock.target_seconds,
    )


def clocks_spoken(
    issues: Iterable[Issue], spoken: Mapping[int, str], *, at: datetime, reopened: bool = False
) -> None:
    """The public word on these issues is now ``spoken[issue.pk]``'s (a ``Speaker``).

    The customer's word starts a clock where none runs (a first-response one if the team has
    not answered this ticket before); the team's stops the running one and records it."""
    issues = [issue for issue in issues if issue.pk in spoken]
    policies = _policies(issue.project_id for issue in issues)
    issues = [issue for issue in issues if issue.project_id in policies]
    if not issues:
        return
    clocks = ResponseClock.objects.select_for_update().in_bulk([issue.pk for issue in issues])
    answered, started = [], []
    for issue in issues:
        clock = clocks.get(issue.pk)
        if spoken[issue.pk] == Speaker.TEAM and clock is not None:
            answered.append(_record(policies[issue.project_id], clock, at, answered=True))
        elif (
            spoken[issue.pk] == Speaker.CUSTOMER
            and clock is None
            # A customer's word on a closed ticket starts nothing unless it reopens it.
            and issue.state == Issue.State.OPENED
        ):
            started.append(issue)
    if answered:
        ResponseRecord.objects.bulk_create(answered)
        ResponseClock.objects.filter(pk__in=[record.issue_id for record in answered]).delete()
    if started:
        _start(policies, started, at, reopened=reopened)


def _start(
    policies: dict[int, ResponsePolicy], issues: list[Issue], at: datetime, *, reopened: bool
) -> None:
    answered_before = (
        set()
        if reopened
        else set(
            ResponseRecord.objects.filter(
                issue_id__in=[issue.pk for issue in issues], answered_at__isnull=False
            ).values_list("issue_id", flat=True)
        )
    )
    new = []
    for project_id, policy in policies.items():
        mine = [issue for issue in issues if issue.project_id == project_id]
        for kind in (Kind.FIRST, Kind.NEXT):
            chosen = [
                issue
                for issue in mine
                if (kind == Kind.NEXT) == (reopened or issue.pk in answered_before)
            ]
            if chosen:
                targets = _targets(policy, [issue.pk for issue in chosen], kind)
                new += [_clock(policy, issue, kind, at, targets[issue.pk]) for issue in chosen]
    ResponseClock.objects.bulk_create(new, ignore_conflicts=True)


def clock_closed(issue: Issue, *, at: datetime) -> None:
    """Closing stops the clock; if its target had already passed, that is recorded as missed."""
    clock = ResponseClock.objects.select_for_update().filter(pk=issue.pk).first()
    if clock is None:
        return
    policy = _policies([issue.project_id]).get(issue.project_id)
    if policy is not None:
        record = _record(policy, clock, at, answered=False)
        if not record.met:
            record.save()
    clock.delete()


def clock_merged(source: Issue, into: Issue) -> None:
    """A merged ticket's running clock goes with its thread, unless the target has its own."""
    clock = ResponseClock.objects.select_for_update().filter(pk=source.pk).first()
    if clock is None:
        return
    if into.is_open and not ResponseClock.objects.filter(pk=into.pk).exists():
        ResponseClock.objects.filter(pk=source.pk).update(issue=into)
    else:
        clock.delete()


def clock_reopened(issue: Issue, *, at: datetime) -> None:
    """A reopened ticket waits for a next response, counted from the reopen."""
    clocks_spoken([issue], {issue.pk: Speaker.CUSTOMER}, at=at, reopened=True)


def clock_paused(issue: Issue, *, at: datetime) -> None:
    """Snoozed: the clock keeps what it has counted and stops counting."""
    clock = ResponseClock.objects.select_for_update().filter(pk=issue.pk).first()
    if clock is None or clock.running_since is None:
        return
    policy = ResponsePolicy.objects.get(project_id=issue.project_id)
    clock.consumed_seconds = _consumed(policy, clock, at)
    clock.running_since = clock.due_at = None
    clock.save(update_fields=["consumed_seconds", "running_since", "due_at"])


def clock_resumed(issue: Issue, *, at: datetime) -> None:
    clock = ResponseClock.objects.select_for_update().filter(pk=issue.pk).first()
    if clock is None or clock.running_since is not None:
        return
    policy = ResponsePolicy.objects.get(project_id=issue.project_id)
    clock.running_since = at
    clock.due_at = _due(policy, clock, at)
    clock.save(update_fields=["running_since", "due_at"])


def _due(policy: ResponsePolicy, clock: ResponseClock, at: datetime) -> datetime | None:
    """When a clock counting from ``at`` (its ``running_since``) reaches its target. Past the
    target already: as long ago as it overran (in business time, the best measure we have)."""
    left = clock.target_seconds - clock.consumed_seconds
    if left < 0:
        return at - timedelta(seconds=-left)
    return policy.hours.add(at, left)


def clocks_retarget(*, project_id: int, issue_ids: Iterable[int] | None = None) -> int:
    """Targets, labels or business hours changed: running clocks get their new target and due
    time (what they have counted so far stays counted). Returns how many changed."""
    policy = _policies([project_id]).get(project_id)
    clocks = ResponseClock.objects.select_for_update().filter(project_id=project_id)
    if issue_ids is not None:
        clocks = clocks.filter(issue_id__in=list(issue_ids))
    if policy is None:
        return 0
    now = timezone.now()
    changed = []
    found = list(clocks)
    for kind in (Kind.FIRST, Kind.NEXT):
        mine = [clock for clock in found if clock.kind == kind]
        targets = _targets(policy, [clock.issue_id for clock in mine], kind)
        for clock in mine:
            if clock.running_since is not None:
                # Re-anchor at now so that a change of hours applies from now on.
                clock.consumed_seconds = _consumed(policy, clock, now)
                clock.running_since = now
            clock.target_seconds = targets[clock.issue_id]
            clock.due_at = _due(policy, clock, now) if clock.running_since else None
            if clock.due_at is None or clock.due_at > now:
                clock.breached_at = None
                if clock.due_at is None or clock.due_at - policy.warn > now:
                    clock.warned_at = None
            changed.append(clock)
    ResponseClock.objects.bulk_update(
        changed,
        [
            "consumed_seconds",
            "running_since",
            "target_seconds",
            "due_at",
            "warned_at",
            "breached_at",
        ],
    )
    return len(changed)


@transaction.atomic
def policy_update(*, policy: ResponsePolicy, fields: Iterable[str]) -> ResponsePolicy:
    """Save a project's targets and hours; its running clocks follow."""
    policy.__dict__.pop("hours", None)  # cached from the previous hours
    if policy._state.adding:
        policy.save()
    else:
        policy.save(update_fields=list(fields))
    if policy.enabled:
        clocks_retarget(project_id=policy.project_id)
    else:
        # Switched off: no clock runs, nothing is recorded, nobody is warned.
        ResponseClock.objects.filter(project_id=policy.project_id).delete()
    return policy


@transaction.atomic
def clocks_sweep(*, now: datetime | None = None) -> tuple[int, int]:
    """Warn the team about clocks whose target is near, and tell them when one is missed.

    Each clock is claimed with a conditional UPDATE, so two sweeps never warn twice. Returns
    (warned, breached)."""
    from notifications.services import responses_due

    now = now or timezone.now()
    near = list(
        ResponseClock.objects.filter(breached_at=None, due_at__lte=now + SWEEP_AHEAD)
        .select_related("issue__project")
        .order_by("due_at")
    )
    policies = _policies({clock.project_id for clock in near})
    soon, missed = [], []
    for clock in near:
        policy = policies.get(clock.project_id)
        if policy is None or clock.due_at is None:
            continue
        if clock.due_at <= now:
            claimed = ResponseClock.objects.filter(pk=clock.pk, breached_at=None)
            if claimed.update(breached_at=now, warned_at=clock.warned_at or now):
                missed.append(clock.issue)
        elif (
            clock.warned_at is None
            and clock.due_at - policy.warn <= now
            and ResponseClock.objects.filter(pk=clock.pk, warned_at=None).update(warned_at=now)
        ):
            soon.append(clock.issue)
    responses_due(soon=soon, missed=missed)
    return len(soon), len(missed)


@transaction.atomic
def label_target_set(
    *, policy: ResponsePolicy, label_id: int, first_minutes: int, next_minutes: int
) -> LabelTarget:
    target, _created = LabelTarget.objects.update_or_create(
        policy=policy,
        label_id=label_id,
        defaults={"first_response_minutes": first_minutes, "next_response_minutes": next_minutes},
    )
    clocks_retarget(project_id=policy.project_id)
    return target


@transaction.atomic
def label_target_remove(*, policy: ResponsePolicy, target_id: int) -> bool:
    removed, _by_model = LabelTarget.objects.filter(policy=policy, pk=target_id).delete()
    if removed:
        clocks_retarget(project_id=policy.project_id)
    return bool(removed)
