"""Sending the outbox: claim rows, hand them to Django's email backend, record the result.

Temporary failures (connection refused, timeouts, SMTP 4xx, ESP 5xx) go back to pending with
exponential backoff; permanent ones (SMTP 5xx, refused recipients, ESP 4xx) are recorded as
failed with the server's reason. Delivery is at least once: a worker that dies after the
server accepted an email but before recording it sends it again after the sweeper's delay —
with the same Message-ID, so mail clients show it once.
"""

from __future__ import annotations

import logging
import smtplib
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.selectors import support_bot
from projects.custom_email import custom_email_send_result
from projects.models import CustomEmail
from projects.smtp import connection_for, describe_failure
from servicedesk import ratelimit
from servicedesk.claims import claim_due
from servicedesk.encryption import decrypt
from servicedesk.queues import enqueue

from .models import OutboundEmail, Upload
from .services import note_create

log = logging.getLogger(__name__)
Status = OutboundEmail.Status
STUCK_AFTER = timedelta(seconds=settings.SERVICEDESK_OUTBOUND_STUCK_AFTER)


class PermanentFailure(Exception):
    """The receiving side refused for good: do not retry."""


def _classify(exc: Exception) -> bool:
    """True if the failure is permanent."""
    if isinstance(exc, PermanentFailure):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # Refused at RCPT TO: a 4xx there is greylisting or a full mailbox (try again), only
        # a 5xx is a refusal for good.
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600
    if isinstance(exc, AnymailRecipientsRefused):
        return True
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        return status is not None and 400 <= status < 500 and status != 429
    return False


def outbound_claim(ids: Sequence[int]) -> tuple[list[int], uuid.UUID]:
    return claim_due(OutboundEmail, ids, waiting=Status.PENDING, claimed=Status.SENDING)


def _message(email: OutboundEmail, connection) -> EmailMultiAlternatives:  # type: ignore[no-untyped-def]
    headers = {**email.headers, "Message-ID": email.message_id}
    reply_to = [headers.pop("Reply-To")] if "Reply-To" in headers else None
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=email.body_text,
        from_email=email.from_email,
        to=[email.recipient],
        reply_to=reply_to,
        headers=headers,
        connection=connection,
    )
    message.attach_alternative(email.body_html, "text/html")
    if email.attachments:
        # A file deleted since the email was written is left out; the text still links it.
        for upload in Upload.objects.filter(pk__in=email.attachments).order_by("pk"):
            try:
                with upload.file.open("rb") as handle:
                    content = handle.read()
            except FileNotFoundError:
                log.warning("upload %s is missing from storage; sent as a link only", upload.pk)
                continue
            message.attach(upload.filename, content, upload.content_type)
    return message


def outbound_send(ids: Sequence[int], token: uuid.UUID) -> dict[int, str]:
    """Send claimed emails, one connection per SMTP server; return the status each ended in.

    Emails From a project's own verified address go through that project's SMTP server
    (projects.smtp), the others through the instance's. Each connection is opened once for
    its emails (SMTP: one connect/EHLO/STARTTLS/AUTH per task and server, not per email).
    After a failure it is closed, so the next email starts on a fresh one; if even connecting
    fails, the rest of that server's emails are not tried now and go back to pending with the
    same error (the server is down: retrying each now only waits longer).
    """
    emails = list(
        OutboundEmail.objects.filter(pk__in=ids, claim_token=token)
        .select_related("issue")
        .order_by("pk")
    )
    results: dict[int, str] = {}
    emails = _hold_over_limit(emails, results)
    customs = _custom_servers(emails)
    by_server: dict[int | None, list[OutboundEmail]] = {}
    for email in emails:
        server = email.project_id if _uses_custom_server(email, customs) else None
        by_server.setdefault(server, []).append(email)
    for project_id, batch in by_server.items():
        if project_id is None:
            _send_over(get_connection(fail_silently=False), batch, token, results, "")
            continue
        custom = customs[project_id]
        password = ""
        try:
            password = decrypt(custom.smtp_password_encrypted)
            connection = connection_for(custom)
        except Exception as exc:  # the encryption key that opens the credentials is gone
            for email in batch:
                results[email.pk] = _record_failure(email, exc)
            custom_email_send_result(project_id=project_id, error=describe_failure(exc))
            continue
        error = _send_over(connection, batch, token, results, password)
        custom_email_send_result(project_id=project_id, error=error)
    return results


def _custom_servers(emails: list[OutboundEmail]) -> dict[int, CustomEmail]:
    project_ids = {
        e.project_id for e in emails if e.project_id and e.kind != OutboundEmail.Kind.TEAM
    }
    if not project_ids:
        return {}
    return {
        c.project_id: c
        for c in CustomEmail.objects.filter(
            project_id__in=project_ids, state=CustomEmail.State.VERIFIED
        )
    }


def _uses_custom_server(email: OutboundEmail, customs: dict[int, CustomEmail]) -> bool:
    """An email written From the project's own address goes through its server, even if the
    address was turned off since (the From is written when the email is recorded)."""
    custom = customs.get(email.project_id or 0)
    if custom is None or email.kind == OutboundEmail.Kind.TEAM:
        return False
    return parseaddr(email.from_email)[1].lower() == custom.address.lower()


def _send_over(  # type: ignore[no-untyped-def]
    connection,
    emails: list[OutboundEmail],
    token: uuid.UUID,
    results: dict[int, str],
    password: str,
) -> str:
    """Send ``emails`` over one connection; the last failure (password redacted), or ""."""
    unreachable: Exception | None = None
    last_error = ""
    try:
        for email in emails:
            if unreachable is not None:
                results[email.pk] = _record_failure(email, unreachable, password)
                continue
            try:
                connection.open()  # no-op while the connection is open
            except Exception as exc:
                unreachable = exc
                results[email.pk] = _record_failure(email, exc, password)
                last_error = describe_failure(exc, password)
                continue
            try:
                _message(email, connection).send()
            except Exception as exc:  # every failure is recorded; _classify decides its kind
                results[email.pk] = _record_failure(email, exc, password)
                last_error = describe_failure(exc, password)
                _close(connection)
                continue
            OutboundEmail.objects.filter(pk=email.pk, claim_token=token).update(
                status=Status.SENT, sent_at=timezone.now(), last_error=""
            )
            results[email.pk] = Status.SENT
    finally:
        _close(connection)
    return last_error


def _hold_over_limit(emails: list[OutboundEmail], results: dict[int, str]) -> list[OutboundEmail]:
    """The outbound limit per project per hour: emails over it wait (pending, not counted as
    an attempt) until the next hour; Support Bot says so once per issue and hour in an
    internal note. Returns the emails that may go now."""
    limit = settings.SERVICEDESK_OUTBOUND_EMAILS_PER_PROJECT_PER_HOUR
    # Every email to the outside counts, "[Rejected]" notices too: those to unknown addresses
    # count against the instance, so forged senders cannot make us a relay beyond the limit.
    # The team's notifications go to the project's own members, account emails (invitations,
    # password resets) to its people: they do not count.
    own = (OutboundEmail.Kind.TEAM, OutboundEmail.Kind.ACCOUNT)
    counted = [(e, e.project_id or "instance") for e in emails if e.kind not in own]
    if limit <= 0 or not counted:
        return emails
    try:
        over = ratelimit.hit_many(
            [f"outbound:{project_id}" for _, project_id in counted], limit=limit, window=3600
        )
    except Exception:  # the limiter's store is down: sending matters more than the limit
        log.warning("outbound rate limit unavailable; sending without it", exc_info=True)
        return emails
    held = {e.pk for (e, _), is_over in zip(counted, over, strict=True) if is_over}
    if not held:
        return emails
    hour = int(time.time() // 3600)
    resume = datetime.fromtimestamp((hour + 1) * 3600, tz=UTC)
    OutboundEmail.objects.filter(pk__in=held).update(
        status=Status.PENDING,
        next_attempt_at=resume,
        attempts=F("attempts") - 1,
        last_error=f"held: over {limit} emails per project per hour",
    )
    for email in emails:
        if email.pk not in held:
            continue
        results[email.pk] = Status.PENDING
        if email.issue is not None and cache.add(f"outbound-held:{email.issue_id}:{hour}", 1, 3700):
            note_create(
                issue=email.issue,
                author=support_bot(),
                body=(
                    f"Emails about this issue are held: the project sent more than {limit} "
                    f"emails in the past hour. They go out automatically after "
                    f"{resume:%H:%M} UTC."
                ),
                internal=True,
                system=True,
            )
    return [e for e in emails if e.pk not in held]


def _close(connection) -> None:  # type: ignore[no-untyped-def]
    try:
        connection.close()
    except Exception:  # closing a dead connection: nothing left to do
        log.debug("closing the email connection failed", exc_info=True)


def _record_failure(email: OutboundEmail, exc: Exception, password: str = "") -> str:
    error = describe_failure(exc, password)
    if _classify(exc):
        status, when = Status.FAILED, None
    elif email.attempts >= settings.SERVICEDESK_OUTBOUND_MAX_ATTEMPTS:
        status, when = Status.FAILED, None
        error = f"gave up after {email.attempts} attempts: {error}"
    else:
        status = Status.PENDING
        when = timezone.now() + timedelta(seconds=min(10 * 2 ** (email.attempts - 1), 3600))
    log.warning("email %s to participant of issue %s: %s (%s)", email.pk, email.issue_id,
                error, status)  # fmt: skip
    OutboundEmail.objects.filter(pk=email.pk, claim_token=email.claim_token).update(
        status=status, next_attempt_at=when, last_error=error
    )
    return status


def outbound_sweep() -> int:
    """Re-queue emails left sending by a dead worker; enqueue those whose retry is due."""
    now = timezone.now()
    OutboundEmail.objects.filter(status=Status.SENDING, claimed_at__lt=now - STUCK_AFTER).update(
        status=Status.PENDING, next_attempt_at=now
    )
    due = list(
        OutboundEmail.objects.filter(status=Status.PENDING)
        .filter(
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, created_at__lt=now - timedelta(seconds=30))
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:2000]
    )
    for start in range(0, len(due), 50):
        enqueue("issues.tasks.send_outbound_emails", due[start : start + 50])
    return len(due)


class RetryRefused(Exception):
    """Only a failed email can be sent again, and only while retention has kept its content."""


@transaction.atomic
def outbound_retry(*, email_id: int) -> OutboundEmail:
    """A failed email back to pending, with a fresh set of attempts, queued after commit. Its
    last error stays until the next attempt replaces it."""
    email = OutboundEmail.objects.select_for_update().get(pk=email_id)
    if email.retention_days:
        raise RetryRefused(
            ngettext(
                "Email #%(pk)s cannot be sent again: its content was removed after %(days)s "
                "day (retention).",
                "Email #%(pk)s cannot be sent again: its content was removed after %(days)s "
                "days (retention).",
                email.retention_days,
            )
            % {"pk": email.pk, "days": email.retention_days}
        )
    if email.status != Status.FAILED:
        state = email.get_status_display().lower()
        raise RetryRefused(
            _("Email #%(pk)s is %(state)s, not failed: nothing to retry.")
            % {"pk": email.pk, "state": state}
        )
    email.status, email.attempts, email.next_attempt_at = Status.PENDING, 0, timezone.now()
    email.save(update_fields=["status", "attempts", "next_attempt_at"])
    transaction.on_commit(lambda: enqueue("issues.tasks.send_outbound_emails", [email.pk]))
    return email
