"""Customer satisfaction: the rating a customer gives a ticket from its closing email."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from issues.models import Issue
from projects.models import Project

MAX_COMMENT = 2000


class Score(models.TextChoices):
    GOOD = "good", _("Good")
    OKAY = "okay", _("Okay")
    BAD = "bad", _("Bad")


class Rating(models.Model):
    """One per ticket and close (``closed_at`` says which): a reopened and closed-again ticket
    is asked again. The customer may change it for SURVEY_DAYS after the email."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="ratings")
    closed_at = models.DateTimeField()
    score = models.CharField(max_length=8, choices=Score.choices)
    comment = models.TextField(blank=True, max_length=MAX_COMMENT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issue", "closed_at"], name="rating_per_close"),
        ]
        indexes = [models.Index(fields=["project", "created_at"], name="rating_by_week")]

    def __str__(self) -> str:
        return f"{self.score} for {self.issue_id}"
