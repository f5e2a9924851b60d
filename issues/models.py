from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower, Upper
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from projects.models import Project


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    title = models.CharField(max_length=255)
    color = models.CharField(max_length=7, default="#6699cc")
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["title"]
        constraints = [
            models.UniqueConstraint(fields=["project", "title"], name="label_title_unique")
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def text_color(self) -> str:
        """Black or white, whichever contrasts more with the label's colour: at least 4.58 : 1
        whatever the colour (WCAG AA asks 4.5 : 1 for text)."""
        try:
            channels = [int(self.color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        except ValueError:
            return "#fff"
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
        # Contrast with white (1.05 / (L + .05)) against contrast with black ((L + .05) / .05).
        return "#000" if (luminance + 0.05) ** 2 > 1.05 * 0.05 else "#fff"


class IssueCounter(models.Model):
    """The last iid handed out in a project.

    Its own table, written only by ``issues.services``: a stale Project instance saved
    elsewhere can never rewind it, and bumping it locks this row, not the project's.
    """

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    last_iid = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.project_id}: {self.last_iid}"


def new_thread_token() -> str:
    """128 random bits: the Message-ID customers' mail threads on must not be guessable, or a
    stranger could answer any ticket by naming it in In-Reply-To."""
    return secrets.token_hex(16)


class Speaker(models.TextChoices):
    CUSTOMER = "customer", _("Customer")
    TEAM = "team", _("Team")


class Issue(models.Model):
    class State(models.TextChoices):
        OPENED = "opened", _("Open")
        CLOSED = "closed", _("Closed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="issues")
    iid = models.PositiveIntegerField(editable=False)
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authored_issues"
    )
    confidential = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPENED)
    labels = models.ManyToManyField(Label, blank=True, related_name="issues")
    assignees = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="assigned_issues"
    )
    # Service Desk: who wrote in (From), and where replies go when Reply-To differs (SPEC §4).
    external_author = models.EmailField(max_length=320, blank=True)
    external_author_name = models.CharField(max_length=200, blank=True)
    service_desk_reply_to = models.EmailField(max_length=320, blank=True)
    moved_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="moved_from"
    )
    # The random part of the thread's root Message-ID (issues.emails.issue_message_id).
    thread_token = models.CharField(max_length=32, default=new_thread_token, editable=False)
    # Who spoke last in public, and when: what waits for an answer ("customer") and since when.
    last_public_by = models.CharField(max_length=10, choices=Speaker.choices, blank=True)
    last_public_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Merged into another ticket of the project: closed, its thread moved there; replies to
    # its emails land there (the mailroom follows this as it follows ``moved_to``).
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )
    # Snoozed: out of the open views until ``snoozed_until`` or, when that is empty, until the
    # customer writes again; a customer's email wakes it early either way.
    snoozed_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    snoozed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "iid"], name="issue_iid_unique_in_project")
        ]
        indexes = [
            models.Index(fields=["project", "state", "-created_at"]),
            # The tracker's other orders, per state tab and for "All" (which is also the
            # dashboard's "opened per day"): a page is read off the index, never sorted.
            models.Index(fields=["project", "state", "updated_at"], name="issue_state_updated"),
            models.Index(fields=["project", "created_at"], name="issue_created"),
            models.Index(fields=["project", "updated_at"], name="issue_updated"),
            # The dashboard's "closed per day".
            models.Index(
                fields=["project", "closed_at"],
                condition=Q(state="closed"),
                name="issue_closed_at",
            ),
            # The dashboard's open tickets (issues that came by email), counted from the index.
            models.Index(
                fields=["project", "state"], condition=~Q(external_author=""), name="issue_tickets"
            ),
            # The tracker's author choices (``selectors._PEOPLE_SQL``), confidential or not.
            models.Index(fields=["project", "confidential", "author"], name="issue_author_choices"),
            # "Waiting for us": open tickets whose last public word is the customer's, oldest
            # waiting first.
            models.Index(
                fields=["project", "state", "last_public_by", "last_public_at"],
                name="issue_waiting",
            ),
            # A customer's issues across projects (their page, the issue page's sidebar): the
            # very expression of ``external_author__iexact`` on PostgreSQL.
            models.Index(Upper("external_author"), name="issue_requester"),
            # The beat's wake-up round: snoozes that end at a time, soonest first.
            models.Index(
                fields=["snoozed_until"],
                condition=models.Q(snoozed_until__isnull=False),
                name="issue_snooze_ends",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.full_path}#{self.iid} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("issue_detail", args=[self.project.full_path, self.iid])

    @property
    def reference(self) -> str:
        return f"{self.project.full_path}#{self.iid}"

    @property
    def is_open(self) -> bool:
        return self.state == self.State.OPENED

    @property
    def is_snoozed(self) -> bool:
        return self.snoozed_at is not None

    @property
    def is_service_desk(self) -> bool:
        return bool(self.external_author)

    @property
    def waiting_for_us(self) -> bool:
        """The customer spoke last in public, and the ticket is open or was closed before
        (the tracker's *Waiting for us*: ``selectors.WAITING_FOR_US``)."""
        if self.last_public_by != Speaker.CUSTOMER:
            return False
        closed_before = (
            self.closed_at is not None
            and self.last_public_at is not None
            and self.closed_at < self.last_public_at
        )
        return self.is_open or closed_before


class Note(models.Model):
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notes"
    )
    body = models.TextField()
    internal = models.BooleanField(default=False, help_text="Visible to Reporter+; never emailed.")
    system = models.BooleanField(default=False, help_text="Generated: closed, reopened, …")
    external_author = models.EmailField(
        max_length=320, blank=True, help_text="Sender of a note that came by email."
    )
    external_name = models.CharField(max_length=200, blank=True)
    # An email reply that found its ticket without a reply key, from an address that is not a
    # participant: kept internal (never emailed) until a Reporter+ makes it public.
    from_non_participant = models.BooleanField(default=False)
    # The quoted history of an email reply (our earlier emails, other people's words): shown
    # collapsed to Reporter+ only, never emailed to anyone.
    quoted = models.TextField(blank=True)
    # Came with a merged ticket: the ticket it was written on (issues.services.issue_merge).
    merged_from = models.ForeignKey(
        Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # The dashboard's first response (``dashboard.first_response_note``): a thread's
            # earliest public comment written on the page, without reading the others.
            models.Index(
                fields=["issue", "created_at"],
                condition=Q(internal=False, system=False, external_author=""),
                name="note_first_response",
            ),
        ]

    def __str__(self) -> str:
        return f"Note {self.pk} on {self.issue_id}"


class EmailParticipant(models.Model):
    """An email address that receives the issue's public notes (the requester, Cc'd people)."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="email_participants")
    email = models.EmailField(max_length=320)
    name = models.CharField(max_length=200, blank=True)  # the display name they write with
    created_at = models.DateTimeField(auto_now_add=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    bouncing_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                "issue", Lower("email"), name="participant_email_unique_in_issue"
            )
        ]
        # The issues an address takes part in, whatever the issue (see ``issue_requester``).
        indexes = [models.Index(Upper("email"), name="participant_email")]

    def __str__(self) -> str:
        return self.email

    @property
    def is_reachable(self) -> bool:
        return self.unsubscribed_at is None and self.bouncing_at is None


def new_reply_key() -> str:
    """128 random bits as 32 hex characters: the key in Reply-To addresses (SPEC §1)."""
    return secrets.token_hex(16)


class SentNotification(models.Model):
    """One email sent to one participant; its reply key routes replies and unsubscribes."""

    reply_key = models.CharField(max_length=32, default=new_reply_key, editable=False)
    # Its own secret for the unsubscribe link and address: a reply key quoted or forwarded to
    # someone else must not let them unsubscribe the recipient (nor the reverse).
    unsubscribe_token = models.CharField(max_length=32, default=new_reply_key, editable=False)
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="sent_notifications")
    participant = models.ForeignKey(
        EmailParticipant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sent_notifications",
    )
    note = models.ForeignKey(
        Note, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A team member's notification: their reply by email is a comment as them.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    recipient = models.EmailField(max_length=320)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        # Unique by constraints, not unique=True: on PostgreSQL that adds a LIKE 'prefix%' twin
        # index no query uses (tests/servicedesk/test_indexes.py). The same for every text
        # column below.
        constraints = [
            models.UniqueConstraint(fields=["reply_key"], name="sent_reply_key_unique"),
            models.UniqueConstraint(fields=["unsubscribe_token"], name="sent_unsubscribe_unique"),
        ]

    def __str__(self) -> str:
        # The reply key is a credential (it can post to the issue): never print it whole.
        return f"notification {self.reply_key[:6]}… to issue {self.issue_id}"


class IssueEmail(models.Model):
    """A Message-ID that belongs to an issue, received or sent: threads replies (SPEC §5)."""

    class Direction(models.TextChoices):
        INBOUND = "in", _("Received")
        OUTBOUND = "out", _("Sent")

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="emails")
    message_id = models.CharField(max_length=998)
    direction = models.CharField(max_length=3, choices=Direction.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issue", "message_id"], name="issue_email_unique")
        ]
        indexes = [models.Index(fields=["message_id"], name="issue_email_message_id")]

    def __str__(self) -> str:
        return self.message_id


def upload_path(instance: Upload, filename: str) -> str:
    # A random directory per upload: names never collide and paths cannot be guessed.
    return f"{instance.project_id}/{secrets.token_hex(16)}/{filename}"


class Upload(models.Model):
    """A file attached to an email or a comment; served only to those who can see the issue."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="uploads")
    issue = models.ForeignKey(
        Issue, null=True, blank=True, on_delete=models.CASCADE, related_name="uploads"
    )
    note = models.ForeignKey(
        Note, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads"
    )
    file = models.FileField(upload_to=upload_path, max_length=500)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveBigIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(note__isnull=True) | Q(issue__isnull=False),
                name="upload_note_needs_issue",
            )
        ]

    def __str__(self) -> str:
        return self.filename

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


class OutboundEmail(models.Model):
    """The outbox ledger: one email to send, written in the transaction that caused it.

    The whole email (headers and both bodies) is rendered at that moment, so sending is pure
    I/O and what was sent can always be shown. Sent after commit by a Celery task; temporary
    failures are retried with backoff, permanent ones recorded with the reason.
    """

    class Kind(models.TextChoices):
        THANK_YOU = "thank_you", _("Thank you")
        NEW_NOTE = "new_note", _("New note")
        NEW_PARTICIPANT = "new_participant", _("New participant")
        ISSUE_CLOSED = "issue_closed", _("Issue closed")
        MERGED = "merged", _("Ticket merged")
        REJECTED = "rejected", _("Rejected")
        TEAM = "team", _("Team notification")
        # Invitations, password resets, email address confirmations (accounts.services).
        ACCOUNT = "account", _("Account email")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Whose outbound limit the email counts against: the issue's project, or for a "[Rejected]"
    # notice the project it was addressed to (none for unknown addresses: the instance's).
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    issue = models.ForeignKey(
        Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_emails"
    )
    note = models.ForeignKey(
        Note, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    participant = models.ForeignKey(
        EmailParticipant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(  # the team member a team notification is for
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sent_notification = models.OneToOneField(
        SentNotification, null=True, blank=True, on_delete=models.SET_NULL, related_name="email"
    )
    recipient = models.EmailField(max_length=320)
    from_email = models.CharField(max_length=640)
    subject = models.CharField(max_length=998)
    message_id = models.CharField(max_length=998)
    headers = models.JSONField(default=dict, blank=True)
    body_text = models.TextField()
    body_html = models.TextField()
    # Upload ids sent as real attachments (a comment's files totalling at most
    # SERVICEDESK_EMAIL_ATTACHMENTS_MAX_SIZE; larger ones are links in the body instead).
    attachments = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Set when retention removed both bodies (servicedesk/retention.py): after this many days.
    retention_days = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["message_id"], name="outbound_message_id_unique")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbound_due"),
            # "At most one [Rejected] notice per sender per hour" looks here.
            models.Index(fields=["kind", "recipient", "created_at"], name="outbound_by_recipient"),
            # The Outbound mail pages: a project's newest first, and the instance's.
            models.Index(fields=["project", "-created_at", "-id"], name="outbound_by_project"),
            models.Index(fields=["-created_at", "-id"], name="outbound_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient} ({self.status})"
