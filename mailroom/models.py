"""The mailroom's records: every email received (the inbound ledger) and mailbox health."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

# Not an outcome: the email waits in the queue for an earlier one it names (ledger._wait).
WAITING = "waiting"


class InboundMessage(models.Model):
    """One received email: raw bytes stored and committed before anything else happens.

    Life: ``queued`` → ``processing`` (claimed by a worker, committed) → ``done`` with an
    outcome, or back to ``queued`` after an error of ours (retried with backoff) until
    ``failed``. A worker that dies leaves the row in ``processing``; the sweeper re-queues it.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        PROCESSING = "processing", _("Processing")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    class Outcome(models.TextChoices):
        ISSUE_CREATED = "issue_created", _("Issue created")
        NOTE_ADDED = "note_added", _("Note added")
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        REJECTED = "rejected", _("Rejected")
        SPAM = "spam", _("Spam (quarantined)")
        IGNORED = "ignored", _("Ignored")
        FAILED = "failed", _("Failed")

    transport = models.CharField(max_length=32)  # imap, graph, stdin, smtp, lmtp, webhook:<esp>
    mailbox = models.CharField(max_length=64, blank=True)  # incoming_email, service_desk_email
    uid_validity = models.BigIntegerField(null=True, blank=True)
    uid = models.BigIntegerField(null=True, blank=True)
    # The message's id in its mailbox when that is not an IMAP UID: Microsoft Graph's
    # (immutable) message id. Empty for the other transports.
    source_id = models.CharField(max_length=512, blank=True, default="")
    raw = models.BinaryField()
    size = models.PositiveIntegerField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    # Filled when processed (cheap to show in lists without parsing raw again).
    message_id = models.CharField(max_length=998, blank=True)
    from_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=998, blank=True)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    reason = models.TextField(blank=True)
    # How the outcome was reached: which rule, which header, which key (key redacted).
    decision = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # The earlier email this one waits for (it names it): woken when that one is done.
    waiting_for = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The sender should get one "[Rejected]" notice (sent by the outbound mail code).
    rejection_notice_due = models.BooleanField(default=False)
    # Spam quarantine: a Reporter+ decided ("not spam" releases it: processed again without
    # the spam check; "spam" confirms it). Undecided spam rows are the quarantine.
    spam_reviewed_at = models.DateTimeField(null=True, blank=True)
    spam_reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    spam_released = models.BooleanField(default=False)
    # Set when retention removed the raw bytes (servicedesk/retention.py): after this many days.
    retention_days = models.PositiveSmallIntegerField(null=True, blank=True)

    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    issue = models.ForeignKey(
        "issues.Issue", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.ForeignKey(
        "issues.Note", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # The same IMAP message (mailbox + UIDVALIDITY + UID) is stored once, however many
            # times it is fetched (crash between our commit and the \Deleted flag).
            models.UniqueConstraint(
                fields=["mailbox", "uid_validity", "uid"],
                condition=Q(uid__isnull=False),
                name="inbound_unique_imap_uid",
            ),
            # The same Graph message is stored once too (crash between our commit and the
            # PATCH that marks it read, or two pollers).
            models.UniqueConstraint(
                fields=["mailbox", "source_id"],
                condition=~Q(source_id=""),
                name="inbound_unique_source_id",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "claimed_at"], name="inbound_status_claimed"),
            models.Index(fields=["outcome", "-received_at"], name="inbound_outcome"),
            # A project's ledger page and its spam quarantine: newest first.
            models.Index(fields=["project", "-received_at"], name="inbound_project_recent"),
            # Threading looks emails up by Message-ID (equality only: Meta.indexes, not
            # db_index=True, which adds an unused LIKE 'prefix%' twin on PostgreSQL).
            models.Index(fields=["message_id"], name="inbound_message_id"),
        ]

    def __str__(self) -> str:
        return f"inbound #{self.pk} ({self.status}{': ' + self.outcome if self.outcome else ''})"


class MailboxState(models.Model):
    """Health of one configured mailbox, written by its poller."""

    name = models.CharField(max_length=64)
    uid_validity = models.BigIntegerField(null=True, blank=True)
    last_fetch_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    consecutive_errors = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    messages_fetched = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name"], name="mailbox_state_name_unique")]

    def __str__(self) -> str:
        return self.name


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker ran a task from beat: tells ops the worker is alive."""

    hostname = models.CharField(max_length=255)
    seen_at = models.DateTimeField()
    beats = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["hostname"], name="worker_heartbeat_hostname_unique")
        ]

    def __str__(self) -> str:
        return f"{self.hostname} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
