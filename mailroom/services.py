from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import ngettext

from accounts.models import User

from . import spam
from .ledger import inbound_requeue
from .models import InboundMessage, MailboxState, WorkerHeartbeat
from .parsing import parse_email


@transaction.atomic
def worker_heartbeat_record(*, hostname: str) -> WorkerHeartbeat:
    now = timezone.now()
    heartbeat, created = WorkerHeartbeat.objects.get_or_create(
        hostname=hostname, defaults={"seen_at": now, "beats": 1}
    )
    if not created:
        WorkerHeartbeat.objects.filter(pk=heartbeat.pk).update(seen_at=now, beats=F("beats") + 1)
        heartbeat.refresh_from_db()
    return heartbeat


def mailbox_health_record(*, name: str, ok: bool, error: str = "", fetched: int = 0) -> None:
    """A poller's pass over its mailbox: when it ran, whether it worked, what it stored."""
    now = timezone.now()
    state, _ = MailboxState.objects.get_or_create(name=name)
    updates: dict[str, Any] = {
        "last_fetch_at": now, "messages_fetched": F("messages_fetched") + fetched,
    }  # fmt: skip
    if ok:
        updates.update(last_success_at=now, consecutive_errors=0, last_error="")
    else:
        updates.update(consecutive_errors=F("consecutive_errors") + 1, last_error=error[:2000])
    MailboxState.objects.filter(pk=state.pk).update(**updates)


class NotInQuarantine(Exception):
    """The email is not (or no longer) waiting for a spam decision."""


def _quarantined(message_id: int) -> InboundMessage:
    row = InboundMessage.objects.select_for_update().filter(pk=message_id).first()
    if row is None or row.outcome != InboundMessage.Outcome.SPAM or row.spam_reviewed_at:
        raise NotInQuarantine(f"inbound message {message_id} is not in the spam quarantine")
    return row


def spam_release(*, message_id: int, user: User) -> InboundMessage:
    """ "Not spam": tell Akismet (ham) and process the email again without the spam check — it
    becomes an issue, with its thank-you, like any other."""
    with transaction.atomic():
        row = _quarantined(message_id)
        row.spam_reviewed_at = timezone.now()
        row.spam_reviewed_by = user
        row.spam_released = True
        row.save(update_fields=["spam_reviewed_at", "spam_reviewed_by", "spam_released"])
    _report(row, spam_verdict=False)
    return inbound_requeue(row.pk)


@transaction.atomic
def spam_confirm(*, message_id: int, user: User) -> InboundMessage:
    """ "Spam": tell Akismet it was right and take the email out of the quarantine (the ledger
    row stays, with who decided)."""
    row = _quarantined(message_id)
    row.spam_reviewed_at = timezone.now()
    row.spam_reviewed_by = user
    row.reason = f"spam (confirmed by {user.get_username()})"
    row.save(update_fields=["spam_reviewed_at", "spam_reviewed_by", "reason"])
    transaction.on_commit(lambda: _report(row, spam_verdict=True))
    return row


def _report(row: InboundMessage, *, spam_verdict: bool) -> None:
    parsed = parse_email(bytes(row.raw))
    spam.report(parsed, spam=spam_verdict)


class ReprocessRefused(Exception):
    """The ledger page's "Reprocess" cannot run for this email now; the text says why."""


# Done with these, an email's work exists: processing it again would only be recorded as a
# duplicate (and lose the ledger's link to the issue it made).
_CARRIED_OUT = {InboundMessage.Outcome.ISSUE_CREATED, InboundMessage.Outcome.NOTE_ADDED}


def inbound_reprocess_refusal(row: InboundMessage) -> str:
    """Why "Reprocess" cannot run for this email now; empty when it can."""
    if row.retention_days:
        return ngettext(
            "Email #%(pk)s cannot be processed again: its raw bytes were removed after "
            "%(days)s day (retention).",
            "Email #%(pk)s cannot be processed again: its raw bytes were removed after "
            "%(days)s days (retention).",
            row.retention_days,
        ) % {"pk": row.pk, "days": row.retention_days}
    if row.status == InboundMessage.Status.PROCESSING:
        return f"Email #{row.pk} is being processed right now; try again when it is done."
    if row.status == InboundMessage.Status.DONE and (
        (row.outcome in _CARRIED_OUT and row.issue_id)
        or row.outcome == InboundMessage.Outcome.UNSUBSCRIBED
    ):
        return (
            f"Email #{row.pk} was carried out ({row.get_outcome_display().lower()}); processing "
            "it again would only record a duplicate."
        )
    if row.outcome == InboundMessage.Outcome.SPAM:
        return (
            f"Email #{row.pk} was classified as spam: it is released or confirmed in the spam "
            "quarantine, not processed again here."
        )
    return ""


@transaction.atomic
def inbound_reprocess(*, message_id: int) -> InboundMessage:
    """Queue one email for processing again (the ledger page's "Reprocess", and
    ``manage.py reprocess_email``).

    Refused while a worker is processing it, for an email that became an issue or a note of
    an issue that still exists, for a carried-out unsubscribe, and for spam (decided in the
    quarantine: ``spam_release``/``spam_confirm``).
    """
    row = InboundMessage.objects.defer("raw").select_for_update().get(pk=message_id)
    refusal = inbound_reprocess_refusal(row)
    if refusal:
        raise ReprocessRefused(refusal)
    try:
        return inbound_requeue(row.pk)
    except ValueError as exc:  # started processing since we looked
        raise ReprocessRefused(str(exc)) from None
