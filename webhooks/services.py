"""Webhooks: recorded in the cause's transaction, sent after it by a task.

``issues.services`` calls ``issues_opened``, ``issue_changed`` and ``notes_posted`` where it
records the team's notifications, and the mailroom's ledger calls ``emails_received``: each
writes one ``WebhookDelivery`` per event and interested hook (one INSERT for a batch; one
SELECT when the project has no hooks) and queues the sending on commit, so a rolled-back cause
sends nothing and a committed one is never lost (the beat sweeper sends what a lost task
left). ``deliveries_send`` claims rows (``UPDATE … WHERE status``: two workers never send the
same one), POSTs the JSON with httpx and records the answer: 2xx is sent; anything else is
retried with backoff (1 min, 5 min, 30 min, 2 h, 6 h, 12 h by default) until
SERVICEDESK_WEBHOOKS_MAX_ATTEMPTS; 410 Gone turns the hook off.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from issues.models import Issue, Label, Note
from projects.models import Project
from servicedesk.claims import claim_due
from servicedesk.encryption import encrypt
from servicedesk.queues import enqueue

from . import network, payloads
from .models import Trigger, Webhook, WebhookDelivery

log = logging.getLogger(__name__)
Status = WebhookDelivery.Status
SEND_TASK = "webhooks.tasks.send_deliveries"
RESPONSE_EXCERPT = 2000  # characters of the receiver's answer kept in the log
_READ_AT_MOST = 64 * 1024  # bytes of the answer read at all
# Multiples of SERVICEDESK_WEBHOOKS_RETRY_DELAY after the 1st, 2nd, … failed attempt.
BACKOFF = (1, 5, 30, 120, 360, 720)
# A delivery left "sending" this long lost its worker: the sweeper hands it out again.
STUCK_AFTER = timedelta(seconds=settings.SERVICEDESK_WEBHOOKS_STUCK_AFTER)
TASK_BATCH = 5


# --- Recording (in the cause's transaction) ----------------------------------------------------


@dataclass
class _Cause:
    """One thing that happened, for the hooks that want its trigger."""

    issue: Issue
    trigger: str  # issue, note or service_desk_email (made confidential_* by ``confidential``)
    actor: User | None = None
    action: str = ""  # an issue's: open, close, reopen, update
    changes: payloads.Payload = field(default_factory=dict)
    note: Note | None = None
    message: Any = None  # a Service Desk email's ledger row
    was_confidential: bool = False

    def confidential(self, issue: Issue) -> bool:
        if self.trigger == Trigger.SERVICE_DESK_EMAIL:
            return False  # a trigger of its own, whatever the issue
        if self.note is not None and self.note.internal:
            return True
        return issue.confidential or self.was_confidential

    def payload(self, issue: Issue, labels: list[Label], people: list[User]) -> payloads.Payload:
        if self.trigger == Trigger.SERVICE_DESK_EMAIL:
            return payloads.email_payload(
                issue=issue, note=self.note, message=self.message, labels=labels, assignees=people
            )
        if self.note is not None:
            return payloads.note_payload(self.note, issue, labels, people)
        return payloads.issue_payload(
            issue, actor=self.actor, action=self.action, labels=labels, assignees=people,
            changes=self.changes,
        )  # fmt: skip


def issues_opened(issues: Sequence[Issue], actor: User) -> None:
    """New issues (from email or the browser, or an issue moved here)."""
    _record([_Cause(issue, Trigger.ISSUE, actor, "open") for issue in issues])


def issue_changed(issue: Issue, actor: User, *, action: str, changes: payloads.Payload) -> None:
    """Closed, reopened (``action`` close/reopen) or updated (labels, assignees,
    confidentiality), with GitLab's ``changes``: {field: {previous, current}}. An issue made
    public goes to the confidential hooks too: it was confidential until now."""
    was = bool(changes.get("confidential", {}).get("previous", False))
    _record([_Cause(issue, Trigger.ISSUE, actor, action, changes, was_confidential=was)])


def labels_changed(
    issue: Issue, actor: User, *, previous: Iterable[Label], current: Iterable[Label]
) -> None:
    def described(labels: Iterable[Label]) -> list[payloads.Payload]:
        return [payloads.label_payload(label) for label in sorted(labels, key=lambda x: x.title)]

    changes = {"labels": {"previous": described(previous), "current": described(current)}}
    issue_changed(issue, actor, action="update", changes=changes)


def assignees_changed(
    issue: Issue, actor: User, *, previous: Iterable[User], current: Iterable[User]
) -> None:
    def described(users: Iterable[User]) -> list[payloads.Payload | None]:
        return [payloads.user_payload(u) for u in sorted(users, key=lambda u: u.username)]

    changes = {"assignees": {"previous": described(previous), "current": described(current)}}
    issue_changed(issue, actor, action="update", changes=changes)


def notes_posted(notes: Sequence[Note]) -> None:
    """Comments, internal notes and customers' replies (never system notes)."""
    _record([_Cause(note.issue, Trigger.NOTE, note=note) for note in notes if not note.system])


def emails_received(received: Sequence[tuple[Any, Issue, Note | None]]) -> None:
    """Customers' emails that became an issue or a note: (ledger row, issue, note or None)."""
    _record(
        [
            _Cause(issue, Trigger.SERVICE_DESK_EMAIL, note=note, message=row)
            for row, issue, note in received
        ]
    )


def _confidential(trigger: str) -> str:
    return {"issue": Trigger.CONFIDENTIAL_ISSUE, "note": Trigger.CONFIDENTIAL_NOTE}[trigger]


def _record(causes: list[_Cause]) -> None:
    if not causes:
        return
    hooks: dict[int, list[Webhook]] = {}
    projects = {c.issue.project_id for c in causes}
    for hook in Webhook.objects.filter(project_id__in=projects, enabled=True):
        hooks.setdefault(hook.project_id, []).append(hook)
    causes = [c for c in causes if c.issue.project_id in hooks]
    if not causes:
        return
    # Read again in the cause's transaction: its labels and assignees as they are now.
    issues = {
        issue.pk: issue
        for issue in Issue.objects.filter(pk__in={c.issue.pk for c in causes})
        .select_related("project__group")
        .prefetch_related("labels", "assignees")
    }
    deliveries = []
    for cause in causes:
        issue = issues[cause.issue.pk]
        trigger = _confidential(cause.trigger) if cause.confidential(issue) else cause.trigger
        wanting = [hook for hook in hooks[issue.project_id] if hook.wants(trigger)]
        if not wanting:
            continue
        labels = sorted(issue.labels.all(), key=lambda label: label.title)
        people = sorted(issue.assignees.all(), key=lambda user: user.username)
        payload = cause.payload(issue, labels, people)
        deliveries += [
            WebhookDelivery(hook=hook, event=trigger, payload=payload) for hook in wanting
        ]
    _queue(deliveries)


def _queue(deliveries: list[WebhookDelivery]) -> None:
    if not deliveries:
        return
    WebhookDelivery.objects.bulk_create(deliveries)
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: _enqueue(ids))


def _enqueue(ids: list[int]) -> None:
    # A few per task: one slow receiver holds up only its neighbours, and a task's time limit
    # (webhooks.tasks in CELERY_TASK_ANNOTATIONS) covers every one timing out.
    for start in range(0, len(ids), TASK_BATCH):
        enqueue(SEND_TASK, ids[start : start + TASK_BATCH])


# --- Settings ----------------------------------------------------------------------------------

TRIGGER_FIELDS = [f"{t.value}_events" for t in Trigger]


def webhook_url_check(url: str) -> None:
    """Refuse targets on private, loopback, link-local, multicast or reserved networks."""
    try:
        network.resolve(url)
    except network.TargetRefused as exc:
        raise ValidationError(str(exc), code="target") from None


@transaction.atomic
def webhook_save(
    *,
    project: Project,
    hook: Webhook | None = None,
    url: str,
    secret: str | None,
    enabled: bool,
    verify_ssl: bool,
    **events: bool,
) -> Webhook:
    """Create or update a project's hook. ``secret``: None keeps it, "" removes it."""
    if hook is not None and hook.project_id != project.pk:
        raise ValidationError("Not this project's webhook.")
    webhook_url_check(url)
    hook = hook or Webhook(project=project)
    hook.url = url
    hook.enabled = enabled
    hook.verify_ssl = verify_ssl
    if enabled:
        hook.disabled_reason = ""
    if secret is not None:
        hook.secret_encrypted = encrypt(secret) if secret else ""
    for name in TRIGGER_FIELDS:
        setattr(hook, name, bool(events.get(name, False)))
    hook.save()
    return hook


@transaction.atomic
def webhook_delete(*, hook: Webhook) -> None:
    hook.delete()


@transaction.atomic
def webhook_test(*, hook: Webhook, user: User) -> WebhookDelivery:
    """A sample issue event, sent now (whatever events the hook asked for)."""
    delivery = WebhookDelivery(
        hook=hook, event="test", payload=payloads.sample_issue_payload(hook.project, user)
    )
    _queue([delivery])
    return delivery


@transaction.atomic
def delivery_resend(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """The same payload again, as a new entry of the log."""
    again = WebhookDelivery(hook=delivery.hook, event=delivery.event, payload=delivery.payload)
    _queue([again])
    return again


# --- Sending (after the commit, in a task) -----------------------------------------------------


def deliveries_claim(ids: Sequence[int]) -> tuple[list[int], uuid.UUID]:
    return claim_due(WebhookDelivery, ids, waiting=Status.PENDING, claimed=Status.SENDING)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliveries_send(ids: Sequence[int], token: uuid.UUID) -> dict[int, str]:
    """Send claimed deliveries, one request each; the status each ended in."""
    rows = WebhookDelivery.objects.filter(pk__in=ids, claim_token=token).select_related("hook")
    return {delivery.pk: _send(delivery) for delivery in rows.order_by("pk")}


@dataclass
class _Answer:
    status: int | None = None
    body: str = ""
    error: str = ""
    permanent: bool = False


def _send(delivery: WebhookDelivery) -> str:
    hook = delivery.hook
    started = time.monotonic()
    if not hook.enabled:
        answer = _Answer(error="The webhook is disabled.", permanent=True)
    else:
        answer = _post(hook, delivery)
    duration = int((time.monotonic() - started) * 1000)
    return _record_answer(delivery, answer, duration)


def _headers(hook: Webhook, delivery: WebhookDelivery, body: bytes) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ServiceDesk-Webhook/1",
        "X-Gitlab-Event": delivery.gitlab_event,
        "X-Gitlab-Instance": settings.SITE_URL,
        "X-ServiceDesk-Event": delivery.event,
        # The same for every attempt of a delivery: receivers can drop repeats.
        "X-ServiceDesk-Delivery": str(delivery.pk),
        "Idempotency-Key": f"servicedesk-webhook-{delivery.pk}",
    }
    secret = hook.secret
    if secret:
        headers["X-ServiceDesk-Token"] = secret
        headers["X-Gitlab-Token"] = secret  # receivers written for GitLab check this one
        headers["X-ServiceDesk-Signature"] = signature(secret, body)
    return headers


def _post(hook: Webhook, delivery: WebhookDelivery) -> _Answer:
    try:
        target = network.resolve(hook.url)
    except network.TargetRefused as exc:
        return _Answer(error=str(exc), permanent=exc.permanent)
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    headers = _headers(hook, delivery, body)
    url = httpx.URL(hook.url)
    # To the checked address (no second DNS lookup); the receiver sees its own host name, and
    # TLS checks the certificate against it (SNI).
    headers["Host"] = url.netloc.decode("ascii")
    pinned = url.copy_with(host=str(target.address))
    timeout = httpx.Timeout(settings.SERVICEDESK_WEBHOOKS_TIMEOUT)
    try:
        with (
            httpx.Client(
                verify=hook.verify_ssl, timeout=timeout, follow_redirects=False, trust_env=False
            ) as client,
            client.stream(
                "POST", pinned, content=body, headers=headers,
                extensions={"sni_hostname": target.host},
            ) as response,
        ):  # fmt: skip
            return _Answer(response.status_code, _excerpt(response))
    except httpx.HTTPError as exc:
        return _Answer(error=f"{type(exc).__name__}: {exc}"[:1000])


def _excerpt(response: httpx.Response) -> str:
    """The start of the answer. The read timeout is per chunk: a receiver that trickles its
    answer byte by byte is cut off after the timeout in all (the status is what counts)."""
    read = b""
    deadline = time.monotonic() + settings.SERVICEDESK_WEBHOOKS_TIMEOUT
    for chunk in response.iter_bytes():  # decoded (gzip), but no more than we keep
        read += chunk
        if len(read) >= _READ_AT_MOST or time.monotonic() > deadline:
            break
    return read[:_READ_AT_MOST].decode("utf-8", "replace")[:RESPONSE_EXCERPT]


def _retry_delay(attempts: int) -> timedelta:
    factor = BACKOFF[min(attempts, len(BACKOFF)) - 1]
    return timedelta(seconds=settings.SERVICEDESK_WEBHOOKS_RETRY_DELAY * factor)


def _record_answer(delivery: WebhookDelivery, answer: _Answer, duration: int) -> str:
    now = timezone.now()
    error, when = answer.error, None
    if answer.status is not None and 200 <= answer.status < 300:
        status = Status.SENT
    elif answer.status == 410:
        status, error = Status.FAILED, "410 Gone: the receiver is gone; the webhook is turned off."
        reason = f"The receiver answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC."
        Webhook.objects.filter(pk=delivery.hook_id).update(enabled=False, disabled_reason=reason)
    elif answer.permanent:
        status = Status.FAILED
    elif delivery.attempts >= settings.SERVICEDESK_WEBHOOKS_MAX_ATTEMPTS:
        status = Status.FAILED
        error = f"gave up after {delivery.attempts} attempts" + (f": {error}" if error else "")
    else:
        status, when = Status.PENDING, now + _retry_delay(delivery.attempts)
    if answer.status is not None and 300 <= answer.status < 400 and not error:
        error = "Redirects are not followed: give the webhook its final URL."
    if status != Status.SENT:
        log.warning("webhook delivery %s to hook %s: %s %s (%s)", delivery.pk, delivery.hook_id,
                    answer.status or "", error, status)  # fmt: skip
    WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=delivery.claim_token).update(
        status=status,
        next_attempt_at=when,
        response_status=answer.status,
        response_body=answer.body,
        duration_ms=duration,
        error=error,
        attempted_at=now,
    )
    if when is not None:
        delay = (when - now).total_seconds()
        enqueue(SEND_TASK, [delivery.pk], countdown=delay)
    return status


def deliveries_sweep() -> int:
    """Hand out again deliveries left sending by a dead worker; queue those that are due."""
    now = timezone.now()
    WebhookDelivery.objects.filter(status=Status.SENDING, claimed_at__lt=now - STUCK_AFTER).update(
        status=Status.PENDING, next_attempt_at=now
    )
    due = list(
        WebhookDelivery.objects.filter(status=Status.PENDING)
        .filter(
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, created_at__lt=now - timedelta(seconds=30))
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:2000]
    )
    _enqueue(due)
    return len(due)
