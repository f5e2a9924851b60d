"""The inbound ledger: store first, then claim, process and record exactly one outcome.

Never lose mail (SPEC §3):
- ``inbound_store*`` commit the raw bytes before anything else; only then may a transport
  delete the message at its source (IMAP ``\\Deleted``, SMTP ``250``, webhook ``200``).
- ``inbound_claim`` marks rows ``processing`` in a committed transaction and counts the
  attempt, so a message that kills its worker is eventually given up, not retried forever.
- ``inbound_process`` does the work and records the outcome in one transaction, under the
  row's lock and only if its claim is still current: the work and its record commit together
  or not at all, so each message yields one issue or note, never two.
- ``inbound_sweep`` re-queues rows whose worker died and re-enqueues retries that are due.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.selectors import support_bot
from issues.emails import Rejection, rejection_notices, sent_by_this_worker
from servicedesk.claims import claim_due
from servicedesk.queues import enqueue
from webhooks import services as webhooks

from . import handlers
from .models import WAITING, InboundMessage
from .parsing import MalformedEmail, parse_email

log = logging.getLogger(__name__)
Status = InboundMessage.Status
WAIT_MAX_SECONDS = 15.0
Outcome = InboundMessage.Outcome


@dataclass(frozen=True)
class RawEmail:
    raw: bytes
    uid: int | None = None  # IMAP
    source_id: str = ""  # Microsoft Graph's message id


def _enqueue(ids: Sequence[int], countdown: float = 0) -> None:
    """Queue processing tasks in arrival order (a task's rows, and the tasks themselves)."""
    ids = sorted(ids)
    size = settings.SERVICEDESK_INBOUND_TASK_BATCH
    for start in range(0, len(ids), size):
        enqueue("mailroom.tasks.process_inbound", ids[start : start + size], countdown=countdown)


def stored_message_id(raw: bytes) -> str:
    """The Message-ID, read when the email is stored: a reply can then wait for its original
    while that is still in the ledger (headers only; the body is not parsed here)."""
    try:
        return (parse_email(raw).message_id or "")[:998]
    except MalformedEmail:
        return ""


def inbound_store(
    *, raw: bytes, transport: str, mailbox: str = "", enqueue: bool = True
) -> InboundMessage:
    """Store one email and commit; processing is queued after the commit."""
    with transaction.atomic():
        row = InboundMessage.objects.create(
            transport=transport,
            mailbox=mailbox,
            raw=raw,
            size=len(raw),
            message_id=stored_message_id(raw),
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue([row.pk]))
    return row


def inbound_store_imap_batch(
    *, mailbox: str, uid_validity: int, emails: Iterable[RawEmail], enqueue: bool = True
) -> list[int]:
    """Store a batch fetched from one IMAP mailbox; UIDs already stored are skipped.

    Returns the ids of rows created now. A UID stored by an earlier fetch (we crashed before
    flagging it) is not stored twice: the caller just flags it again.
    """
    batch = list(emails)
    return _store_batch(
        [
            InboundMessage(transport="imap", mailbox=mailbox, uid_validity=uid_validity,
                           uid=email.uid)
            for email in batch
        ],
        batch,
        Q(mailbox=mailbox, uid_validity=uid_validity, uid__in=[email.uid for email in batch]),
        enqueue=enqueue,
    )  # fmt: skip


def inbound_store_graph_batch(
    *, mailbox: str, emails: Iterable[RawEmail], enqueue: bool = True
) -> list[int]:
    """Store a page of messages fetched from a Microsoft Graph mailbox; message ids already
    stored are skipped (we crashed before marking them read), as for IMAP's UIDs."""
    batch = list(emails)
    return _store_batch(
        [InboundMessage(transport="graph", mailbox=mailbox, source_id=e.source_id) for e in batch],
        batch,
        Q(mailbox=mailbox, source_id__in=[email.source_id for email in batch]),
        enqueue=enqueue,
    )


def _store_batch(
    rows: list[InboundMessage], emails: list[RawEmail], stored: Q, *, enqueue: bool
) -> list[int]:
    """Insert ``rows`` (one per email, its source's identity set) in one transaction; a row
    whose identity is already stored is skipped by the unique constraint. Returns the ids of
    the rows ``stored`` selects that are new (queued, never attempted)."""
    if not rows:
        return []
    for row, email in zip(rows, emails, strict=True):
        row.raw, row.size, row.message_id = email.raw, len(email.raw), stored_message_id(email.raw)
    with transaction.atomic():
        InboundMessage.objects.bulk_create(rows, ignore_conflicts=True)
        ids = list(
            InboundMessage.objects.filter(stored, status=Status.QUEUED, attempts=0)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if enqueue and ids:
            transaction.on_commit(lambda: _enqueue(ids))
    return ids


def inbound_claim(ids: Sequence[int]) -> tuple[list[int], uuid.UUID]:
    """Claim queued rows for this worker (committed); rows locked or taken elsewhere are left."""
    return claim_due(InboundMessage, ids, waiting=Status.QUEUED, claimed=Status.PROCESSING)


def inbound_process(message_id: int, token: uuid.UUID) -> str | None:
    """Process one claimed row; return its outcome, or None if the claim was lost (or the
    email waits for an earlier one)."""
    return inbound_process_batch([message_id], token).get(message_id)


def inbound_process_batch(ids: Sequence[int], token: uuid.UUID) -> dict[int, str]:
    """Process claimed rows together, one email or many alike: decide first, reading only
    (no transaction: Akismet's HTTP call and the rate limit's Redis round trip hold no lock),
    then write every decision and record every outcome in one transaction, under the rows'
    locks and only for rows whose claim is still ours.

    If anything fails, the batch's transaction is rolled back and each row is processed alone:
    the faulty one records its error (retried with backoff, or given up), and a poison message
    never takes its neighbours down with it. Returns the outcomes recorded (failed included).
    """
    rows = list(
        InboundMessage.objects.filter(
            pk__in=ids, status=Status.PROCESSING, claim_token=token
        ).order_by("pk")
    )
    if not rows:
        return {}
    try:
        decisions = handlers.plan(rows)
        # The customers' thank-yous leave as the batch commits (issues.emails): at the rate
        # email comes in, a queue behind the inbound work would hold them for seconds.
        with sent_by_this_worker(), transaction.atomic():
            # FOR NO KEY UPDATE: another batch's email that waits for one of these records
            # it (waiting_for, a foreign key: FOR KEY SHARE), and must not wait for this
            # batch's commit while holding the project's issue counter this batch needs next.
            ours = set(
                InboundMessage.objects.select_for_update(no_key=True)
                .filter(pk__in=[row.pk for row in rows], status=Status.PROCESSING,
                        claim_token=token)
                .values_list("pk", flat=True)
            )  # fmt: skip
            rows = [row for row in rows if row.pk in ours]
            results = handlers.carry_out(
                {pk: d for pk, d in decisions.items() if pk in ours}, support_bot()
            )
            waiting = [(row, results.pop(row.pk)) for row in rows
                       if row.pk in results and results[row.pk].outcome == WAITING]  # fmt: skip
            _wait(waiting)
            _record_results(rows, results)
            _emails_received(rows, results)
            _rejection_notices([(row, results[row.pk]) for row in rows if row.pk in results])
        _wake_waiters(list(results))
        return {pk: result.outcome for pk, result in results.items()}
    except SoftTimeLimitExceeded as exc:
        # The task's time is up; there is none left to process the rest one by one. Alone,
        # the email records the error (retried, then failed); in a batch, every email goes back
        # to the queue as a task of its own, not charged for its neighbour.
        if len(rows) == 1:
            log.warning("inbound message %s hit the task's time limit", rows[0].pk)
            outcome = _record_error(rows[0].pk, token, exc)
            return {rows[0].pk: outcome} if outcome else {}
        log.warning(
            "inbound batch of %d hit the task's time limit; each goes again alone", len(rows)
        )
        _requeue_alone([row.pk for row in rows], token)
        return {}
    except Exception as exc:
        if len(rows) == 1:
            # Our fault, not the sender's: record it, retry later with backoff, or give up.
            log.exception("inbound message %s failed (it will be retried or given up)", rows[0].pk)
            outcome = _record_error(rows[0].pk, token, exc)
            return {rows[0].pk: outcome} if outcome else {}
        log.exception("inbound batch of %d failed; processing its messages one by one", len(rows))
        outcomes: dict[int, str] = {}
        for row in rows:
            outcomes.update(inbound_process_batch([row.pk], token))
        return outcomes


def _emails_received(rows: list[InboundMessage], results: dict[int, Any]) -> None:
    """Customers' emails that became an issue or a note: the projects' webhooks hear of them
    (a team member's emailed comment is a note event only)."""
    received = []
    for row in rows:
        result = results.get(row.pk)
        if result is None or result.issue is None:
            continue
        if result.outcome == Outcome.ISSUE_CREATED or (
            result.outcome == Outcome.NOTE_ADDED and result.note and result.note.external_author
        ):
            received.append((row, result.issue, result.note))
    webhooks.emails_received(received)


def _requeue_alone(ids: list[int], token: uuid.UUID) -> None:
    InboundMessage.objects.filter(pk__in=ids, claim_token=token, status=Status.PROCESSING).update(
        status=Status.QUEUED, claim_token=None, next_attempt_at=None, attempts=F("attempts") - 1
    )
    for pk in ids:
        _enqueue([pk])


def _record_results(rows: list[InboundMessage], results: dict[int, Any]) -> None:
    """One statement for the batch's outcomes (executemany: pipelined by psycopg)."""
    table = InboundMessage._meta.db_table
    sql = (
        f"UPDATE {table} SET status = %s, outcome = %s, reason = %s, decision = %s, "  # noqa: S608
        "project_id = %s, issue_id = %s, note_id = %s, rejection_notice_due = %s, "
        "processed_at = %s, last_error = '', message_id = %s, from_address = %s, subject = %s "
        "WHERE id = %s"
    )
    now = timezone.now()
    params = [
        (
            Status.DONE, r.outcome, r.reason[:10_000], json.dumps(r.decision),
            r.project.pk if r.project else None, r.issue.pk if r.issue else None,
            r.note.pk if r.note else None, r.rejection_notice_due, now,
            row.message_id, row.from_address, row.subject, row.pk,
        )
        for row in rows
        if (r := results.get(row.pk)) is not None
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _wait(rows: Sequence[tuple[InboundMessage, Any]]) -> None:
    """Give rows back to the queue, unprocessed, until what they wait for is finished: a reply
    whose original is still in the ledger is processed after it, never beside it (two workers
    would each miss the other's issue, and the reply would open an issue of its own).

    Waiting is not an attempt; the delay grows from one second to WAIT_MAX_SECONDS.
    """
    if not rows:
        return
    now = timezone.now()
    delays: dict[float, list[int]] = {}
    for row, result in rows:
        waits = row.decision.get("waits", 0) + 1 if row.decision.get("rule") == "wait" else 1
        delay = min(2.0 ** (waits - 1), WAIT_MAX_SECONDS)
        InboundMessage.objects.filter(pk=row.pk).update(
            status=Status.QUEUED,
            claim_token=None,
            attempts=F("attempts") - 1,
            next_attempt_at=now + timedelta(seconds=delay),
            reason=result.reason,
            decision={**result.decision, "waits": waits},
            waiting_for_id=result.decision["waiting_for"],
            message_id=row.message_id,
        )
        delays.setdefault(delay, []).append(row.pk)
    for delay, ids in delays.items():
        transaction.on_commit(functools.partial(_enqueue, ids, countdown=delay + 0.05))


def _wake_waiters(done: list[int]) -> None:
    """Queue now the emails that waited for these (committed) ones. Without this they would
    still come back after their delay; with it, a reply follows its original at once."""
    waiting = InboundMessage.objects.filter(waiting_for__in=done, status=Status.QUEUED)
    ids = list(waiting.values_list("pk", flat=True))
    if ids:
        InboundMessage.objects.filter(pk__in=ids).update(next_attempt_at=None)
        _enqueue(ids)


def _rejection_notices(done: Sequence[tuple[InboundMessage, Any]]) -> None:
    """Record the "[Rejected]" notices of rejected rows, in the transaction of their outcome."""
    rejection_notices(
        [
            Rejection(
                recipient=row.from_address,
                subject=row.subject,
                reason=result.reason,
                message_id=row.message_id,
                project=result.project,
            )
            for row, result in done
            if result.rejection_notice_due
        ]
    )


def _record_error(message_id: int, token: uuid.UUID, exc: Exception) -> str | None:
    error = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        row = InboundMessage.objects.select_for_update().get(pk=message_id)
        if row.claim_token != token:
            return None
        row.last_error = error
        if row.attempts >= settings.SERVICEDESK_INBOUND_MAX_ATTEMPTS:
            row.status = Status.FAILED
            row.outcome = Outcome.FAILED
            row.reason = f"failed after {row.attempts} attempts: {error}"
            row.processed_at = timezone.now()
        else:
            row.status = Status.QUEUED
            row.next_attempt_at = timezone.now() + timedelta(seconds=5 * 2 ** (row.attempts - 1))
        row.save()
        return row.outcome or None


def inbound_sweep() -> dict[str, int]:
    """Re-queue rows whose worker died; enqueue queued rows that nobody is working on."""
    now = timezone.now()
    stuck_before = now - timedelta(seconds=settings.SERVICEDESK_INBOUND_STUCK_AFTER)
    counts = {"requeued": 0, "failed": 0, "enqueued": 0}
    with transaction.atomic():
        stuck = list(
            InboundMessage.objects.select_for_update(skip_locked=True).filter(
                status=Status.PROCESSING, claimed_at__lt=stuck_before
            )
        )
        for row in stuck:
            if row.attempts >= settings.SERVICEDESK_INBOUND_MAX_ATTEMPTS:
                row.status, row.outcome = Status.FAILED, Outcome.FAILED
                row.reason = f"worker stopped while processing it {row.attempts} times"
                row.processed_at = now
                counts["failed"] += 1
            else:
                row.status, row.next_attempt_at = Status.QUEUED, now
                counts["requeued"] += 1
            row.save(
                update_fields=["status", "outcome", "reason", "processed_at", "next_attempt_at"]
            )
    # Fresh rows have a task on its way; only those waiting a while (lost task, retry due)
    # are enqueued again. A duplicate task is harmless: the claim lets one of them through.
    due = list(
        InboundMessage.objects.filter(status=Status.QUEUED)
        .filter(
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, received_at__lt=now - timedelta(seconds=10))
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:5000]
    )
    if due:
        _enqueue(due)
    counts["enqueued"] = len(due)
    return counts


def inbound_requeue(message_id: int) -> InboundMessage:
    """Put a finished or failed message back in the queue, as new. Only through
    ``mailroom.services.inbound_reprocess`` (which says when not to) and the spam release."""
    with transaction.atomic():
        row = InboundMessage.objects.select_for_update().get(pk=message_id)
        if row.status == Status.PROCESSING:
            raise ValueError(f"inbound message {message_id} is being processed right now")
        row.status = Status.QUEUED
        row.outcome = ""
        row.reason = ""
        row.attempts = 0
        row.next_attempt_at = None
        row.claim_token = None
        row.save()
        transaction.on_commit(lambda: _enqueue([row.pk]))
    return row
