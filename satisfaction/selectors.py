from __future__ import annotations

from issues.models import Issue

from .models import Rating


def satisfaction_latest(*, issue: Issue) -> Rating | None:
    """The customer's answer about the ticket's latest close (shown to Reporter+)."""
    return Rating.objects.filter(issue=issue).order_by("-closed_at").first()
