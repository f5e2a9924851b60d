"""Writes of the API app: personal access tokens, and the issue update that bundles several
``issues.services`` calls into one transaction (a PUT changes all it asks for, or nothing)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from issues import services as issue_services
from issues.models import Issue, Label

from .models import TOKEN_PREFIX, PersonalAccessToken, token_digest

if TYPE_CHECKING:
    from accounts.models import User

# The last-used time is written at most this often per token: a busy script must not turn
# every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class NewToken:
    token: PersonalAccessToken
    secret: str  # shown once, never stored


@transaction.atomic
def token_create(*, user: User, name: str, scopes: list[str], expires_at: date) -> NewToken:
    name = " ".join(name.split())
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the token a name."
    elif len(name) > 100:
        errors["name"] = "The name may be at most 100 characters."
    valid = PersonalAccessToken.Scope.values
    chosen = [scope for scope in valid if scope in scopes]
    if not chosen or len(set(scopes)) != len(chosen):
        errors["scopes"] = f"Choose one or more of: {', '.join(valid)}."
    today = timezone.now().date()
    longest = settings.SERVICEDESK_API_TOKEN_MAX_DAYS
    if expires_at <= today:
        errors["expires_at"] = "The expiry date must be in the future."
    elif expires_at > today + timedelta(days=longest):
        errors["expires_at"] = f"A token may live at most {longest} days."
    if user.is_bot or not user.is_active:
        errors["name"] = "This account cannot have access tokens."
    if errors:
        raise ValidationError(errors)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(24)
    token = PersonalAccessToken.objects.create(
        user=user, name=name, digest=token_digest(secret), scopes=chosen, expires_at=expires_at
    )
    return NewToken(token=token, secret=secret)


@transaction.atomic
def token_revoke(*, token: PersonalAccessToken) -> bool:
    """Whether it was revoked now (False: it already was)."""
    done = PersonalAccessToken.objects.filter(pk=token.pk, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    token.refresh_from_db(fields=["revoked_at"])
    return bool(done)


def token_touch(token: PersonalAccessToken) -> None:
    """Record that the token was used: one UPDATE at most per LAST_USED_RESOLUTION (the
    condition is also in the statement, so concurrent requests write it once)."""
    now = timezone.now()
    stale = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale:
        return
    PersonalAccessToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at=None) | Q(last_used_at__lte=stale)
    ).update(last_used_at=now)
    token.last_used_at = now


@dataclass(frozen=True)
class IssueChanges:
    """What a PUT on an issue asks for; None: leave it as it is. The caller checked that the
    user may make each change."""

    state_event: str | None = None  # "close" or "reopen"
    labels: list[Label] | None = None  # exactly these
    add_labels: list[Label] | None = None
    remove_labels: list[Label] | None = None
    assignees: list[User] | None = None  # exactly these
    confidential: bool | None = None


@transaction.atomic
def issue_update(*, issue: Issue, user: User, changes: IssueChanges) -> Issue:
    """Each change through the service the issue page uses (its system note, its emails and
    notifications), all in one transaction: a refused change undoes the others."""
    if changes.labels is not None:
        issue_services.issue_labels_set(issue=issue, user=user, labels=changes.labels)
    if changes.add_labels or changes.remove_labels:
        issue_services.issue_labels_change(
            issue=issue, user=user, add=changes.add_labels or (), remove=changes.remove_labels or ()
        )
    if changes.assignees is not None:
        issue_services.issue_assignees_set(issue=issue, user=user, assignees=changes.assignees)
    if changes.confidential is not None:
        issue_services.issue_confidentiality_set(
            issue=issue, user=user, confidential=changes.confidential
        )
    if changes.state_event == "close":
        issue_services.issue_close(issue=issue, user=user)
    elif changes.state_event == "reopen":
        issue_services.issue_reopen(issue=issue, user=user)
    elif changes.state_event is not None:
        raise ValidationError({"state_event": "Use close or reopen."})
    return issue
