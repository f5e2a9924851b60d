"""Project webhooks (GitLab's, for the events of a Service Desk) and their delivery outbox."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from projects.models import Project
from servicedesk.encryption import InvalidToken, decrypt


class Trigger(models.TextChoices):
    """What a hook can ask for; the value is the payload's ``event_type``."""

    ISSUE = "issue", _("Issue events")
    CONFIDENTIAL_ISSUE = "confidential_issue", _("Confidential issue events")
    NOTE = "note", _("Comments")
    CONFIDENTIAL_NOTE = "confidential_note", _("Confidential comments")
    SERVICE_DESK_EMAIL = "service_desk_email", _("Service Desk email received")


class Webhook(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    # Fernet token of the secret (servicedesk/encryption.py): never shown again once saved.
    secret_encrypted = models.TextField(blank=True)
    issue_events = models.BooleanField(default=True)
    confidential_issue_events = models.BooleanField(default=False)
    note_events = models.BooleanField(default=False)
    confidential_note_events = models.BooleanField(default=False)
    service_desk_email_events = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    verify_ssl = models.BooleanField(default=True)
    # Why it was turned off by us (the receiver answered 410 Gone), shown on the settings page.
    disabled_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"webhook {self.pk} of {self.project_id}"

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    @property
    def secret(self) -> str:
        if not self.secret_encrypted:
            return ""
        try:
            return decrypt(self.secret_encrypted)
        except InvalidToken:  # saved under a key no longer configured: sent unsigned
            return ""

    def wants(self, trigger: str) -> bool:
        return bool(getattr(self, f"{trigger}_events", False))

    @property
    def triggers(self) -> list[str]:
        return [str(t.label) for t in Trigger if self.wants(t.value)]


class WebhookDelivery(models.Model):
    """One event for one hook: recorded in the transaction of its cause, sent by a task."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    hook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)  # a Trigger value, or "test"
    payload = models.JSONField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)  # the first RESPONSE_EXCERPT characters
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    attempted_at = models.DateTimeField(null=True, blank=True)
    # Set when retention removed the payload and the answer (servicedesk/retention.py): after
    # this many days.
    retention_days = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["hook", "-created_at"], name="webhook_delivery_log"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending") | Q(status="sending"),
                name="webhook_delivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of hook {self.hook_id}: {self.event} {self.status}"

    @property
    def gitlab_event(self) -> str:
        """The X-Gitlab-Event header: GitLab's names, so existing receivers route it."""
        return GITLAB_EVENT.get(self.event, "Service Desk Hook")


GITLAB_EVENT = {
    "issue": "Issue Hook",
    "confidential_issue": "Confidential Issue Hook",
    "note": "Note Hook",
    "confidential_note": "Confidential Note Hook",
    "service_desk_email": "Service Desk Email Hook",
    "test": "Issue Hook",
}
