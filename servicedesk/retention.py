"""Retention: the content of old emails and webhook requests is removed, their rows kept.

After ``SERVICEDESK_RETENTION_*_DAYS`` (a year by default; 0 keeps for ever):

- a sent or failed outbound email loses its text and HTML bodies (recipient, subject, headers,
  status, Message-ID and error stay);
- a processed inbound email (done or failed) loses its raw bytes (sender, subject, Message-ID,
  outcome, decision and what it became stay); undecided spam in the quarantine is kept until
  someone decides, since releasing it needs the email;
- a sent or failed webhook request loses its payload and the receiver's answer.

Only finished rows are touched: an email still pending, sending, queued, processing or
waiting for a retry keeps everything. Each row records ``retention_days``, which the ledgers
and the admin show ("removed after N days") and which makes Retry, Reprocess and Resend refuse.

Run daily by beat (``issues.tasks.apply_retention``) and by ``manage.py apply_retention``:
idempotent, in batches of ``SERVICEDESK_RETENTION_BATCH`` rows (one transaction each, walking
the primary key), so memory and lock time stay bounded whatever the backlog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import ngettext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """What one table loses, when, and which of its rows are finished."""

    name: str
    model: type[models.Model]
    date_field: str
    days: int
    finished: Q
    cleared: dict[str, Any] = field(default_factory=dict)

    def due(self, now: datetime) -> models.QuerySet[Any]:
        cutoff = now - timedelta(days=self.days)
        return self.model._default_manager.filter(
            self.finished, retention_days=None, **{f"{self.date_field}__lt": cutoff}
        )


def rules() -> list[Rule]:
    from issues.models import OutboundEmail
    from mailroom.models import InboundMessage
    from webhooks.models import WebhookDelivery

    inbound = InboundMessage.Status
    undecided_spam = Q(outcome=InboundMessage.Outcome.SPAM, spam_reviewed_at=None)
    return [
        Rule(
            "outbound",
            OutboundEmail,
            "created_at",
            settings.SERVICEDESK_RETENTION_OUTBOUND_DAYS,
            Q(status__in=[OutboundEmail.Status.SENT, OutboundEmail.Status.FAILED]),
            {"body_text": "", "body_html": ""},
        ),
        Rule(
            "inbound",
            InboundMessage,
            "received_at",
            settings.SERVICEDESK_RETENTION_INBOUND_DAYS,
            Q(status__in=[inbound.DONE, inbound.FAILED]) & ~undecided_spam,
            {"raw": b""},
        ),
        Rule(
            "webhooks",
            WebhookDelivery,
            "created_at",
            settings.SERVICEDESK_RETENTION_WEBHOOK_DAYS,
            Q(status__in=[WebhookDelivery.Status.SENT, WebhookDelivery.Status.FAILED]),
            {"payload": {}, "response_body": ""},
        ),
    ]


def _apply(rule: Rule, now: datetime, batch: int) -> int:
    """Clear the rule's due rows, ``batch`` at a time, in order of primary key."""
    removed, last_pk = 0, 0
    while True:
        due = rule.due(now).filter(pk__gt=last_pk).order_by("pk")
        ids = list(due.values_list("pk", flat=True)[:batch])
        if not ids:
            return removed
        # The conditions again: a row retried or reprocessed since it was read is not touched.
        removed += rule.due(now).filter(pk__in=ids).update(retention_days=rule.days, **rule.cleared)
        last_pk = ids[-1]


def apply_retention(
    *, now: datetime | None = None, dry_run: bool = False, batch: int | None = None
) -> dict[str, int]:
    """The number of rows whose content was removed (or, dry, would be), per table."""
    now = now or timezone.now()
    batch = batch or settings.SERVICEDESK_RETENTION_BATCH
    counts = {}
    for rule in rules():
        if rule.days <= 0:
            counts[rule.name] = 0
        elif dry_run:
            counts[rule.name] = rule.due(now).count()
        else:
            counts[rule.name] = _apply(rule, now, batch)
            if counts[rule.name]:
                logger.info(
                    "Retention: removed the content of %s %s rows older than %s days",
                    counts[rule.name], rule.name, rule.days,
                )  # fmt: skip
    return counts


def retention_removed(days: int) -> str:
    """What the ledgers and the admin show where the removed content was."""
    return ngettext(
        "Removed after %(days)s day (retention).", "Removed after %(days)s days (retention).", days
    ) % {"days": days}
