"""Saved replies (GitLab's comment templates, Help Scout's saved replies): a person's own, or a
project's (kept by its Maintainers), inserted into the comment box with their placeholders
filled; they may hold quick actions (a macro: text + ``/label ~refund`` + ``/close``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from projects.models import Project

MAX_CONTENT = 10_000


class SavedReply(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="saved_replies",
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="saved_replies"
    )
    name = models.CharField(max_length=100)
    content = models.TextField(max_length=MAX_CONTENT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, project__isnull=True)
                | Q(user__isnull=True, project__isnull=False),
                name="saved_reply_one_owner",
            ),
            models.UniqueConstraint(fields=["user", "name"], name="saved_reply_user_name"),
            models.UniqueConstraint(fields=["project", "name"], name="saved_reply_project_name"),
        ]

    def __str__(self) -> str:
        return self.name
