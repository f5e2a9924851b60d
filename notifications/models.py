"""What the team hears about: notification levels (GitLab's), who hears about new tickets, and
the To-Do list."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from issues.models import Issue, Note
from projects.models import Project


class Level(models.TextChoices):
    """GitLab's notification levels. ``GLOBAL`` (a project's override only): use the default."""

    GLOBAL = "global", _("Use my default")
    WATCH = "watch", _("Watch")
    PARTICIPATING = "participating", _("Participating")
    MENTION = "mention", _("On mention")
    DISABLED = "disabled", _("Disabled")


DEFAULT_LEVEL = Level.PARTICIPATING


class NotificationSetting(models.Model):
    """A person's level: their default (no project) or for one project."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.GLOBAL)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "project"], name="notification_setting_per_project"
            ),
            models.UniqueConstraint(
                fields=["user"], condition=Q(project=None), name="notification_setting_default"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.project_id or 'default'}: {self.level}"


class NewTicketRule(models.Model):
    """Who hears about a project's new tickets, and its unassigned tickets' replies, so that a
    new ticket always reaches someone: every Reporter+ member whose level is not *On mention*
    or *Disabled* (the default, when a project has no rule), or the people chosen."""

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="new_ticket_rule"
    )
    chosen_only = models.BooleanField(default=False)
    people = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"new tickets of {self.project_id}"


class Todo(models.Model):
    """A To-Do: something on a ticket that waits for this person."""

    class Action(models.TextChoices):
        ASSIGNED = "assigned", _("assigned you")
        MENTIONED = "mentioned", _("mentioned you")
        CUSTOMER_REPLIED = "customer_replied", _("the customer replied")
        NEW_TICKET = "new_ticket", _("new ticket")
        SNOOZE_ENDED = "snooze_ended", _("the snooze ended")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="todos"
    )
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="todos")
    action = models.CharField(max_length=20, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.ForeignKey(
        Note, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The header's count and the list: a person's pending To-Dos, newest first.
            models.Index(
                fields=["user", "-created_at"], condition=Q(done_at=None), name="todo_pending"
            ),
            models.Index(fields=["issue", "user"], name="todo_issue_user"),
        ]

    def __str__(self) -> str:
        return f"todo {self.pk} for {self.user_id} on {self.issue_id}: {self.action}"


class Event(models.Model):
    """Something the team may hear about, recorded in the transaction of its cause.

    Who hears about it, their To-Dos and their emails are worked out after the commit by a task
    (``services.events_deliver``): the cause's transaction writes one row whatever the number
    of people, and a burst of new tickets is not slowed by the team's size. A beat sweeper
    delivers what a lost task left behind.
    """

    class Kind(models.TextChoices):
        NEW_TICKET = "new_ticket", _("new ticket")
        CUSTOMER_REPLY = "customer_reply", _("customer reply")
        COMMENT = "comment", _("comment")
        ASSIGNED = "assigned", _("assigned")
        STATE = "state", _("closed or reopened")
        RESPONSE_DUE = "response_due", _("response target near or missed")
        WOKE = "woke", _("snooze ended")

    kind = models.CharField(max_length=20, choices=Kind.choices)
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="+")
    note = models.ForeignKey(
        Note, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    users = models.JSONField(default=list, blank=True)  # ASSIGNED: who was added
    # STATE: the issue's new state; RESPONSE_DUE: "soon" or "missed".
    state = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)  # why it could not be delivered (a bug of ours)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(delivered_at=None), name="event_pending"
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.pk}: {self.kind} on {self.issue_id}"
