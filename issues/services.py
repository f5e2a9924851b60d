"""Every write to issues and notes. Side effects (email) leave only through on_commit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from projects.models import Project

from .models import EmailParticipant, Issue, Label, Note

if TYPE_CHECKING:
    from accounts.models import User


def _next_iid(project: Project) -> int:
    """Allocate the project's next iid, race-free.

    The UPDATE takes the project row's lock until our transaction ends, so concurrent creators
    queue behind it and each reads back its own increment (PostgreSQL READ COMMITTED re-checks
    the row after the wait; SQLite serialises writers). The unique (project, iid) constraint is
    the backstop.
    """
    Project.objects.filter(pk=project.pk).update(last_issue_iid=F("last_issue_iid") + 1)
    return Project.objects.filter(pk=project.pk).values_list("last_issue_iid", flat=True).get()


@transaction.atomic
def issue_create(
    *,
    project: Project,
    author: User,
    title: str,
    description: str = "",
    confidential: bool = False,
    labels: Iterable[Label] = (),
    assignees: Iterable[User] = (),
    external_author: str = "",
    service_desk_reply_to: str = "",
) -> Issue:
    title = " ".join(title.split())[:255] or "(no title)"
    issue = Issue.objects.create(
        project=project,
        iid=_next_iid(project),
        title=title,
        description=description,
        author=author,
        confidential=confidential,
        external_author=external_author,
        service_desk_reply_to=service_desk_reply_to,
    )
    if labels:
        issue.labels.set(labels)
    if assignees:
        issue.assignees.set(assignees)
    return issue


@transaction.atomic
def note_create(
    *,
    issue: Issue,
    author: User,
    body: str,
    internal: bool = False,
    system: bool = False,
    external_author: str = "",
) -> Note:
    body = body.strip()
    if not body:
        raise ValueError("A note needs a body.")
    note = Note.objects.create(
        issue=issue,
        author=author,
        body=body,
        internal=internal,
        system=system,
        external_author=external_author,
    )
    Issue.objects.filter(pk=issue.pk).update(updated_at=note.created_at)
    return note


@transaction.atomic
def issue_close(*, issue: Issue, user: User) -> Issue:
    """Close the issue with a system note. Closing a closed issue changes nothing."""
    locked = Issue.objects.select_for_update().get(pk=issue.pk)
    if locked.state == Issue.State.CLOSED:
        return locked
    locked.state = Issue.State.CLOSED
    locked.closed_at = timezone.now()
    locked.closed_by = user
    locked.save(update_fields=["state", "closed_at", "closed_by", "updated_at"])
    note_create(issue=locked, author=user, body="closed", system=True)
    return locked


@transaction.atomic
def issue_reopen(*, issue: Issue, user: User) -> Issue:
    """Reopen the issue with a system note. Reopening an open issue changes nothing."""
    locked = Issue.objects.select_for_update().get(pk=issue.pk)
    if locked.state == Issue.State.OPENED:
        return locked
    locked.state = Issue.State.OPENED
    locked.closed_at = None
    locked.closed_by = None
    locked.save(update_fields=["state", "closed_at", "closed_by", "updated_at"])
    note_create(issue=locked, author=user, body="reopened", system=True)
    return locked


@transaction.atomic
def participant_add(*, issue: Issue, email: str) -> tuple[EmailParticipant, bool]:
    """Add an email participant; an address already there (any case) is returned as it is."""
    email = email.strip()
    existing = EmailParticipant.objects.filter(issue=issue, email__iexact=email).first()
    if existing is not None:
        return existing, False
    return EmailParticipant.objects.create(issue=issue, email=email), True
