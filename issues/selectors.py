from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404

from projects.models import Project
from projects.permissions import can_read_internal_notes, can_read_issue

from .models import Issue, Label, Note, Upload

if TYPE_CHECKING:
    from projects.permissions import AnyUser

ISSUE_STATES = ("opened", "closed", "all")


def issue_list_for_user(
    *, user: AnyUser, project: Project, state: str = "opened"
) -> QuerySet[Issue]:
    """Issues of ``project`` the user may see, newest first, with labels and a note count.

    Confidential issues are left out below Reporter; internal notes are not counted for those
    who cannot read them. A fixed number of queries whatever the number of rows.
    """
    sees_internal = can_read_internal_notes(user, project)
    issues = Issue.objects.filter(project=project)
    if not sees_internal:
        issues = issues.filter(confidential=False)
    if state in ("opened", "closed"):
        issues = issues.filter(state=state)
    visible_notes = Q(notes__system=False)
    if not sees_internal:
        visible_notes &= Q(notes__internal=False)
    return (
        issues.select_related("author")
        .prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("title")))
        .annotate(note_count=Count("notes", filter=visible_notes))
        .order_by("-created_at", "-id")
    )


def issue_counts_for_user(*, user: AnyUser, project: Project) -> dict[str, int]:
    issues = Issue.objects.filter(project=project)
    if not can_read_internal_notes(user, project):
        issues = issues.filter(confidential=False)
    counts = issues.aggregate(
        opened=Count("pk", filter=Q(state="opened")),
        closed=Count("pk", filter=Q(state="closed")),
        all=Count("pk"),
    )
    return counts


def issue_get_for_user(*, user: AnyUser, project: Project, iid: int) -> Issue:
    """The issue if the user may read it; 404 otherwise (confidential ones below Reporter)."""
    try:
        issue = (
            Issue.objects.select_related("author", "closed_by")
            .prefetch_related("labels", "assignees")
            .get(project=project, iid=iid)
        )
    except Issue.DoesNotExist:
        raise Http404("No such issue") from None
    issue.project = project  # keep the caller's instance and its cached permission state
    if not can_read_issue(user, issue):
        raise Http404("No such issue")
    return issue


def note_list_for_issue(*, user: AnyUser, issue: Issue) -> QuerySet[Note]:
    notes = Note.objects.filter(issue=issue).select_related("author")
    if not can_read_internal_notes(user, issue.project):
        notes = notes.filter(internal=False)
    return notes.order_by("created_at", "id")


def upload_get_for_user(*, user: AnyUser, upload_id: int) -> Upload:
    """An upload whose issue the user may read (internal notes' files: Reporter+); else 404."""
    try:
        upload = Upload.objects.select_related("issue", "issue__project", "note").get(pk=upload_id)
    except Upload.DoesNotExist:
        raise Http404("No such file") from None
    if upload.issue is None or not can_read_issue(user, upload.issue):
        raise Http404("No such file")
    if (
        upload.note is not None
        and upload.note.internal
        and not can_read_internal_notes(user, upload.issue.project)
    ):
        raise Http404("No such file")
    return upload


_FILE_LINK_SALT = "issues.upload-email-link"


def upload_email_token(upload: Upload) -> str:
    """A token for a link in an email: downloads this one file without login (the customer
    received it anyway), until SERVICEDESK_EMAIL_FILE_LINK_DAYS have passed."""
    return signing.TimestampSigner(salt=_FILE_LINK_SALT, sep=".").sign(str(upload.pk))


def upload_get_by_token(*, token: str, filename: str) -> Upload:
    """The upload an email link names; 404 for a forged, altered or expired token."""
    max_age = timedelta(days=settings.SERVICEDESK_EMAIL_FILE_LINK_DAYS)
    try:
        upload_id = int(
            signing.TimestampSigner(salt=_FILE_LINK_SALT, sep=".").unsign(token, max_age=max_age)
        )
        upload = Upload.objects.get(pk=upload_id, filename=filename)
    except (signing.BadSignature, ValueError, Upload.DoesNotExist):
        raise Http404("No such file, or the link has expired") from None
    return upload
