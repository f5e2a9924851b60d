"""Reads of the inbound ledger and of mailbox health, for the ledger pages and the banner.

The caller has checked the permission (``projects.permissions.can_view_inbound_ledger`` for a
project's ledger, ``can_view_instance_inbound`` for the instance-wide one); ``project=None``
means the instance-wide ledger, the only place where emails no project claimed are listed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from projects.models import Project

from .models import InboundMessage, MailboxState, WorkerHeartbeat

log = logging.getLogger(__name__)

# What one row of the list shows. Never ``raw`` (up to the size limit per email) nor
# ``decision``: the list costs the same whatever was received.
LIST_FIELDS = (
    "id",
    "received_at",
    "transport",
    "mailbox",
    "size",
    "from_address",
    "subject",
    "status",
    "outcome",
    "reason",
    "attempts",
    "note_id",
    "project",
    "project__full_path",
    "issue",
    "issue__iid",
    "issue__project",
    "issue__project__full_path",
)
SEARCH_MAX_LENGTH = 200


@dataclass(frozen=True)
class LedgerFilters:
    """The list's filters, from the query string; unknown values are ignored, not errors."""

    outcome: str = ""
    status: str = ""
    query: str = ""

    @classmethod
    def from_query(cls, params: Mapping[str, Any]) -> LedgerFilters:
        outcome = str(params.get("outcome", ""))
        status = str(params.get("status", ""))
        return cls(
            outcome=outcome if outcome in InboundMessage.Outcome.values else "",
            status=status if status in InboundMessage.Status.values else "",
            query=str(params.get("q", "")).strip()[:SEARCH_MAX_LENGTH],
        )

    @property
    def active(self) -> bool:
        return bool(self.outcome or self.status or self.query)


def inbound_list(*, project: Project | None, filters: LedgerFilters) -> QuerySet[InboundMessage]:
    """The ledger, newest first: one project's emails, or every email (``project=None``)."""
    rows = InboundMessage.objects.select_related("project", "issue__project").only(*LIST_FIELDS)
    if project is not None:
        rows = rows.filter(project=project)
    if filters.outcome:
        rows = rows.filter(outcome=filters.outcome)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.query:
        rows = rows.filter(
            Q(subject__icontains=filters.query) | Q(from_address__icontains=filters.query)
        )
    return rows.order_by("-received_at", "-id")


def inbound_get(*, message_id: int, project: Project | None) -> InboundMessage:
    """One email of this ledger, without its raw bytes; 404 if it is not in this ledger."""
    rows = InboundMessage.objects.select_related("project", "issue__project").defer(
        "raw", "issue__description", "issue__project__description"
    )
    if project is not None:
        rows = rows.filter(project=project)
    row = rows.filter(pk=message_id).first()
    if row is None:
        raise Http404("No such email in this ledger")
    return row


def inbound_raw(*, message: InboundMessage) -> bytes:
    """The email exactly as received."""
    raw = InboundMessage.objects.filter(pk=message.pk).values_list("raw", flat=True).first()
    return bytes(raw or b"")


# --- Mailbox health ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxHealth:
    """One configured mailbox and what its poller last recorded."""

    name: str
    address: str
    inbox_method: str
    enabled: bool
    polled: bool
    last_fetch_at: datetime | None
    last_success_at: datetime | None
    consecutive_errors: int
    last_error: str
    messages_fetched: int
    alerting: bool


@dataclass(frozen=True)
class MailboxAlert:
    """A polled mailbox that has been failing for longer than the alert threshold."""

    name: str
    last_success_at: datetime | None
    consecutive_errors: int


def _alert_threshold() -> timedelta:
    return timedelta(minutes=settings.SERVICEDESK_MAILBOX_ALERT_MINUTES)


def _is_alerting(
    last_success_at: datetime | None, consecutive_errors: int, now: datetime | None = None
) -> bool:
    """Errors now, and no successful fetch for longer than the threshold (or ever)."""
    if consecutive_errors <= 0:
        return False
    if last_success_at is None:
        return True
    return (now or timezone.now()) - last_success_at > _alert_threshold()


def _secrets_of(config: Any) -> list[str]:
    secrets = [getattr(config, "password", "")]
    graph = getattr(config, "graph", None)
    if graph is not None:
        secrets.append(graph.client_secret)
    return [s for s in secrets if s and len(s) >= 3]


def _without_secrets(text: str, config: Any) -> str:
    """Errors name hosts and users, never the password — unless a server library echoes what it
    was sent. Whatever the error says, a configured secret is never shown."""
    for secret in _secrets_of(config):
        text = text.replace(secret, "[redacted]")
    return text


def mailbox_health() -> list[MailboxHealth]:
    """Every configured mailbox, in configuration order, with its poller's record (one query)."""
    configured = settings.SERVICEDESK_MAILBOXES
    states = {s.name: s for s in MailboxState.objects.filter(name__in=list(configured))}
    now = timezone.now()
    health = []
    for name, config in configured.items():
        state = states.get(name)
        errors = state.consecutive_errors if state else 0
        last_success = state.last_success_at if state else None
        health.append(
            MailboxHealth(
                name=name,
                address=config.address,
                inbox_method=config.inbox_method,
                enabled=config.enabled,
                polled=config.polled,
                last_fetch_at=state.last_fetch_at if state else None,
                last_success_at=last_success,
                consecutive_errors=errors,
                last_error=_without_secrets(state.last_error, config) if state else "",
                messages_fetched=state.messages_fetched if state else 0,
                alerting=config.polled and _is_alerting(last_success, errors, now),
            )
        )
    return health


def _alert_cache_key(names: list[str]) -> str:
    return "mailroom:mailbox-alert-states:" + ",".join(names)


def mailbox_alerts() -> list[MailboxAlert]:
    """The polled mailboxes (IMAP, Graph) to warn about on project pages.

    At most one query, and none for 30 s after one: the poller's record is cached (not the
    verdict, so the threshold is applied at each render). If the cache is unreachable, the page
    still renders: the record is read from the database.
    """
    names = [name for name, config in settings.SERVICEDESK_MAILBOXES.items() if config.polled]
    if not names:
        return []
    key = _alert_cache_key(names)
    states: list[tuple[str, datetime | None, int]] | None
    try:
        states = cache.get(key)
    except Exception:  # a cache outage must not take project pages down
        log.warning("mailbox alert: cache unavailable", exc_info=True)
        states = None
    if states is None:
        states = list(
            MailboxState.objects.filter(name__in=names, consecutive_errors__gt=0).values_list(
                "name", "last_success_at", "consecutive_errors"
            )
        )
        try:
            cache.set(key, states, timeout=30)
        except Exception:
            log.warning("mailbox alert: cache unavailable", exc_info=True)
    now = timezone.now()
    return [
        MailboxAlert(name=name, last_success_at=last_success, consecutive_errors=errors)
        for name, last_success, errors in states
        if _is_alerting(last_success, errors, now)
    ]


# Beat records a heartbeat every 60 s (servicedesk/settings.py): three missed ones is a worker
# (or beat) that stopped.
HEARTBEAT_STALE_AFTER = timedelta(minutes=3)


@dataclass(frozen=True)
class WorkerLine:
    hostname: str
    seen_at: datetime
    beats: int
    stale: bool


def worker_heartbeats(*, limit: int = 20) -> list[WorkerLine]:
    """The workers that ran beat's heartbeat task, most recent first (one query)."""
    now = timezone.now()
    return [
        WorkerLine(
            hostname=h.hostname,
            seen_at=h.seen_at,
            beats=h.beats,
            stale=now - h.seen_at > HEARTBEAT_STALE_AFTER,
        )
        for h in WorkerHeartbeat.objects.order_by("-seen_at")[:limit]
    ]


@dataclass(frozen=True)
class InboundQueue:
    """What waits in the ledger: the lag between receiving an email and processing it."""

    queued: int
    processing: int
    failed: int
    oldest_waiting_at: datetime | None


def inbound_queue() -> InboundQueue:
    """Queued, processing and failed emails, and the oldest one waiting (one query)."""
    Status = InboundMessage.Status
    waiting = Q(status__in=[Status.QUEUED, Status.PROCESSING])
    counts = InboundMessage.objects.filter(
        status__in=[Status.QUEUED, Status.PROCESSING, Status.FAILED]
    ).aggregate(
        queued=Count("id", filter=Q(status=Status.QUEUED)),
        processing=Count("id", filter=Q(status=Status.PROCESSING)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        oldest=Min("received_at", filter=waiting),
    )
    return InboundQueue(
        queued=counts["queued"],
        processing=counts["processing"],
        failed=counts["failed"],
        oldest_waiting_at=counts["oldest"],
    )


def quarantine_list(*, project: Project) -> QuerySet[InboundMessage]:
    """The project's spam quarantine: emails Akismet held back that nobody has decided on."""
    return InboundMessage.objects.filter(
        project=project, outcome=InboundMessage.Outcome.SPAM, spam_reviewed_at__isnull=True
    ).order_by("-received_at", "-id")
