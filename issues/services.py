"""Every write to issues and notes. Side effects (email) leave only through on_commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from django.core.files.base import ContentFile, File
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from projects.models import Project

from .emails import issue_closed
from .models import EmailParticipant, Issue, IssueCounter, IssueEmail, Label, Note, Upload

if TYPE_CHECKING:
    from accounts.models import User


def issue_iids_allocate(*, project_id: int, count: int = 1) -> range:
    """Reserve ``count`` consecutive iids in a project, race-free.

    The UPDATE takes the counter row's lock until our transaction ends, so concurrent creators
    queue behind it and each gets its own range (PostgreSQL READ COMMITTED re-checks the row
    after the wait; SQLite serialises writers). The unique (project, iid) constraint is the
    backstop.
    """
    table = IssueCounter._meta.db_table
    sql = f"UPDATE {table} SET last_iid = last_iid + %s WHERE project_id = %s RETURNING last_iid"  # noqa: S608 - table name from our model
    with connection.cursor() as cursor:
        cursor.execute(sql, [count, project_id])
        row = cursor.fetchone()
        if row is None:
            IssueCounter.objects.bulk_create(
                [IssueCounter(project_id=project_id)], ignore_conflicts=True
            )
            cursor.execute(sql, [count, project_id])
            row = cursor.fetchone()
    last = row[0]
    return range(last - count + 1, last + 1)


def issue_title(title: str) -> str:
    """One line, at most 255 characters (a Subject can be anything)."""
    return " ".join(title.split())[:255] or "(no title)"


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
    issue = Issue.objects.create(
        project=project,
        iid=issue_iids_allocate(project_id=project.pk)[0],
        title=issue_title(title),
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
    files: Sequence[File] = (),
) -> Note:
    """A comment; ``files`` (uploaded in the browser) are stored as the note's uploads and
    linked below its text (images shown inline)."""
    body = body.replace("\x00", "").strip()  # PostgreSQL stores no NUL; browsers send none
    if not body and not files:
        raise ValueError("A note needs a body.")
    note = Note.objects.create(
        issue=issue,
        author=author,
        body=body,
        internal=internal,
        system=system,
        external_author=external_author,
    )
    if files:
        links = [
            upload_markdown(
                upload_create(
                    issue=issue,
                    note=note,
                    filename=_safe_filename(f.name or "file"),
                    content=f,
                    content_type=getattr(f, "content_type", "") or "",
                    uploaded_by=author,
                )
            )
            for f in files
        ]
        note.body = "\n\n".join([body, *links] if body else links)
        note.save(update_fields=["body"])
    Issue.objects.filter(pk=issue.pk).update(updated_at=note.created_at)
    return note


def _issue_set_state(*, issue: Issue, user: User, state: str) -> Issue:
    """Change the state under the row's lock with a system note; no-op if it is already so."""
    locked = Issue.objects.select_for_update().get(pk=issue.pk)
    if locked.state == state:
        return locked
    closing = state == Issue.State.CLOSED
    locked.state = state
    locked.closed_at = timezone.now() if closing else None
    locked.closed_by = user if closing else None
    locked.save(update_fields=["state", "closed_at", "closed_by", "updated_at"])
    note_create(issue=locked, author=user, body="closed" if closing else "reopened", system=True)
    if closing:
        issue_closed(locked)  # the optional "issue closed" email, sent after commit
    return locked


@transaction.atomic
def issue_close(*, issue: Issue, user: User) -> Issue:
    return _issue_set_state(issue=issue, user=user, state=Issue.State.CLOSED)


@transaction.atomic
def issue_reopen(*, issue: Issue, user: User) -> Issue:
    return _issue_set_state(issue=issue, user=user, state=Issue.State.OPENED)


@transaction.atomic
def participant_add(*, issue: Issue, email: str) -> tuple[EmailParticipant, bool]:
    """Add an email participant; an address already there (any case) is returned as it is."""
    email = email.strip()
    existing = EmailParticipant.objects.filter(issue=issue, email__iexact=email).first()
    if existing is not None:
        return existing, False
    return EmailParticipant.objects.create(issue=issue, email=email), True


@transaction.atomic
def participant_unsubscribe(*, participant: EmailParticipant, actor: User) -> bool:
    """Stop emailing this participant; an internal system note records it (it names the address,
    which only Reporter+ may see). Returns False if it was already unsubscribed."""
    if participant.unsubscribed_at is not None:
        return False
    participant.unsubscribed_at = timezone.now()
    participant.save(update_fields=["unsubscribed_at"])
    note_create(
        issue=participant.issue,
        author=actor,
        body=f"{participant.email} unsubscribed from this issue's emails",
        system=True,
        internal=True,
    )
    return True


@transaction.atomic
def participants_mark_bouncing(*, participants: Iterable[EmailParticipant], actor: User) -> int:
    marked = 0
    for participant in participants:
        if participant.bouncing_at is not None:
            continue
        participant.bouncing_at = timezone.now()
        participant.save(update_fields=["bouncing_at"])
        note_create(
            issue=participant.issue,
            author=actor,
            body=f"emails to {participant.email} bounce: no more emails go to it until a "
            "team member clears it",
            system=True,
            internal=True,
        )
        marked += 1
    return marked


def issue_email_record(*, issue: Issue, message_id: str | None, direction: str) -> None:
    """Remember a Message-ID as belonging to the issue: replies naming it thread to it."""
    if message_id:
        IssueEmail.objects.get_or_create(
            issue=issue, message_id=message_id[:998], defaults={"direction": direction}
        )


def _safe_filename(name: str) -> str:
    """A browser-supplied name without directories or control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or "file"


def upload_create(
    *,
    issue: Issue,
    filename: str,
    content: bytes | File,
    content_type: str,
    uploaded_by: User | None,
    note: Note | None = None,
) -> Upload:
    upload = Upload(
        project_id=issue.project_id,
        issue=issue,
        note=note,
        filename=filename,
        content_type=content_type or "application/octet-stream",
        size=content.size if isinstance(content, File) else len(content),
        uploaded_by=uploaded_by,
    )
    upload.file.save(
        filename, content if isinstance(content, File) else ContentFile(content), save=False
    )
    upload.save()
    return upload


def upload_markdown(upload: Upload) -> str:
    """How an upload appears in a description or note: images inline, other files as links."""
    url = reverse("upload", args=[upload.pk, upload.filename])
    label = upload.filename.replace("[", "(").replace("]", ")")
    return f"![{label}]({url})" if upload.is_image else f"[{label}]({url})"
