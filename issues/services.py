"""Every write to issues and notes. Side effects (email) leave only through on_commit."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.core.validators import validate_email
from django.db import connection, models, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.selectors import support_bot
from notifications import services as notifications
from projects.models import CustomEmail, Project, ServiceDeskSetting
from servicedesk.addresses import is_our_address
from sla import services as sla
from webhooks import services as webhooks

from .emails import (
    NewTicket,
    issue_closed,
    issue_merged,
    note_added,
    notes_added,
    service_desk_issues_created,
)
from .models import (
    EmailParticipant,
    Issue,
    IssueCounter,
    IssueEmail,
    Label,
    Note,
    SentNotification,
    Speaker,
    Upload,
)
from .quick_actions import QuickActionResult, apply_quick_actions, quick_actions_finish
from .selectors import assignable_users

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


class IncomingFile(Protocol):
    """A file that came with an email (mailroom.parsing.Attachment)."""

    filename: str
    content_type: str
    content: bytes
    content_id: str | None


@dataclass
class NewIssue:
    """One issue to create. ``requester`` and ``cc`` become email participants (ours, invalid
    and repeated addresses are left out, at most SERVICEDESK_MAX_PARTICIPANTS); with ``notify``
    the requester gets *thank you* and the Cc'd *new participant* (Service Desk on only)."""

    project: Project
    title: str
    description: str = ""
    confidential: bool = False
    external_author: str = ""
    service_desk_reply_to: str = ""
    labels: Sequence[Label] = ()
    assignees: Sequence[User] = ()
    files: Sequence[IncomingFile] = ()
    footnote: str = ""  # appended below the files, e.g. what was left out of the email
    names: Mapping[str, str] = field(default_factory=dict)  # display names by lowercase address
    template: str = ""  # a description template: its quick actions run, its text is appended
    message_id: str = ""  # the email it came from: replies naming it thread here
    requester: str = ""
    cc: Sequence[str] = ()
    notify: bool = False


@dataclass
class NewNote:
    """One note to create. ``files``: uploaded in the browser (Django files) or attachments of
    an email; either way the note's own. With ``notify``, a public, non-system note is emailed to
    the issue's participants (except its own email author)."""

    issue: Issue
    author: User
    body: str
    internal: bool = False
    system: bool = False
    external_author: str = ""
    external_name: str = ""
    from_non_participant: bool = False
    quoted: str = ""
    files: Sequence[IncomingFile | File] = ()
    footnote: str = ""
    message_id: str = ""
    notify: bool = False


def _text(value: str) -> str:
    return value.replace("\x00", "")  # PostgreSQL stores no NUL; customers' mail may hold one


@transaction.atomic
def issues_create(*, author: User, items: Sequence[NewIssue]) -> list[Issue]:
    """Create issues with their files, participants, Message-IDs and emails: a few statements
    for any number of issues (the mailroom's batches), the same path for one."""
    if not items:
        return []
    now = timezone.now()
    counts = Counter(item.project.pk for item in items)
    # Counters are locked in one order (by project id): two batches over the same projects
    # queue behind each other instead of deadlocking.
    iids = {
        pid: iter(issue_iids_allocate(project_id=pid, count=counts[pid])) for pid in sorted(counts)
    }
    issues = [
        Issue(
            project=item.project,
            iid=next(iids[item.project.pk]),
            title=issue_title(_text(item.title)),
            description=_text(item.description).strip(),
            author=author,
            confidential=item.confidential,
            external_author=item.external_author,
            external_author_name=item.names.get(item.external_author.lower(), ""),
            service_desk_reply_to=item.service_desk_reply_to,
            # A ticket from a customer waits for our answer from the start.
            last_public_by=Speaker.CUSTOMER if item.external_author else "",
            last_public_at=now if item.external_author else None,
        )
        for item in items
    ]
    Issue.objects.bulk_create(issues)
    stored = _files_store(
        [(issue, None, item.files) for issue, item in zip(issues, items, strict=True)], author
    )
    described = []
    for issue, item, files in zip(issues, items, stored, strict=True):
        parts = [*_with_files(issue.description, files), _text(item.footnote)]
        if item.template:
            actions = apply_quick_actions(
                issue=issue, text=item.template, user=author, template=True
            )
            parts.append(actions.text)
        description = "\n\n".join(part for part in parts if part)
        if description != issue.description:
            issue.description = description
            described.append(issue)
    Issue.objects.bulk_update(described, ["description"])
    for issue, item in zip(issues, items, strict=True):
        if item.labels:
            issue.labels.set(item.labels)
        if item.assignees:
            issue.assignees.set(item.assignees)
    tickets = _participants_create(issues, items)
    _message_ids_record(
        [(issue, item.message_id) for issue, item in zip(issues, items, strict=True)]
    )
    service_desk_issues_created([t for t, item in zip(tickets, items, strict=True) if item.notify])
    notifications.tickets_opened([issue for issue in issues if issue.external_author])
    # A ticket from a customer waits for our answer: its response clock starts now.
    sla.clocks_spoken(issues, {i.pk: Speaker.CUSTOMER for i in issues if i.external_author}, at=now)
    webhooks.issues_opened(issues, author)
    return issues


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
    [issue] = issues_create(
        author=author,
        items=[
            NewIssue(
                project=project,
                title=title,
                description=description,
                confidential=confidential,
                labels=list(labels),
                assignees=list(assignees),
                external_author=external_author,
                service_desk_reply_to=service_desk_reply_to,
            )
        ],
    )
    return issue


@transaction.atomic
def service_desk_ticket_create(
    *,
    project: Project,
    user: User,
    email: str,
    title: str,
    description: str = "",
    labels: Iterable[Label] = (),
    assignees: Iterable[User] = (),
    thank_you: bool = False,
) -> Issue:
    """A team member opens a Service Desk ticket on behalf of a customer (the API): made as
    the mailroom makes one from the customer's email — the Support Bot its author, ``email``
    its requester and first participant, confidential as the project's setting says (always
    in a public project), the project's description template applied — and with
    ``thank_you`` the requester gets the *thank you* email, as if they had written in. An
    internal system note says who opened it. Service Desk must be on."""
    email = _clean_email(email)
    setting = ServiceDeskSetting.objects.filter(project_id=project.pk).first()
    if setting is None or not setting.service_desk_enabled:
        raise ValidationError("Service Desk is off in this project: turn it on first.")
    template = setting.description_template
    [issue] = issues_create(
        author=support_bot(),
        items=[
            NewIssue(
                project=project,
                title=title,
                description=description,
                confidential=setting.tickets_confidential_by_default or project.is_public,
                external_author=email,
                labels=list(labels),
                assignees=list(assignees),
                template=template.content if template is not None else "",
                requester=email,
                notify=thank_you,
            )
        ],
    )
    note_create(
        issue=issue,
        author=user,
        body=f"opened this Service Desk issue for {email}",
        system=True,
        internal=True,
    )
    return issue


def _participants_create(issues: list[Issue], items: Sequence[NewIssue]) -> list[NewTicket]:
    """The requester and Cc'd addresses of new issues, in one INSERT."""
    rows: list[EmailParticipant] = []
    tickets = []
    for issue, item in zip(issues, items, strict=True):
        seen: set[str] = set()
        requester, cc = None, []
        for n, address in enumerate([item.requester, *item.cc]):
            address = address.strip()
            if not address or address.lower() in seen or is_our_address(address):
                continue
            if not _room(len(seen)):
                break
            seen.add(address.lower())
            participant = EmailParticipant(
                issue=issue, email=address, name=item.names.get(address.lower(), "")
            )
            rows.append(participant)
            if n == 0:
                requester = participant
            else:
                cc.append(participant)
        tickets.append(NewTicket(issue, requester, cc, message_id=item.message_id))
    EmailParticipant.objects.bulk_create(rows)
    return tickets


def _message_ids_record(pairs: Iterable[tuple[Issue, str]]) -> None:
    """Remember the Message-IDs of received emails: replies naming them thread to the issue."""
    IssueEmail.objects.bulk_create(
        [
            IssueEmail(issue=issue, message_id=mid[:998], direction=IssueEmail.Direction.INBOUND)
            for issue, mid in pairs
            if mid
        ],
        ignore_conflicts=True,
    )


@transaction.atomic
def notes_create(items: Sequence[NewNote]) -> list[Note]:
    """Create notes with their files and Message-IDs, bump their issues, email the public ones
    marked ``notify``: a few statements for any number of notes, the same path for one."""
    notes = []
    for item in items:
        body = _text(item.body).strip()
        if not body and not item.files:
            raise ValueError("A note needs a body.")
        notes.append(
            Note(
                issue=item.issue,
                author=item.author,
                body=body,
                internal=item.internal or item.from_non_participant,
                system=item.system,
                external_author=item.external_author,
                external_name=item.external_name,
                from_non_participant=item.from_non_participant,
                quoted=_text(item.quoted).strip(),
            )
        )
    Note.objects.bulk_create(notes)
    stored = [
        _files_store([(item.issue, note, item.files)], item.author)[0] if item.files else []
        for note, item in zip(notes, items, strict=True)
    ]
    bodies = []
    for note, item, files in zip(notes, items, stored, strict=True):
        body = "\n\n".join(p for p in (*_with_files(note.body, files), _text(item.footnote)) if p)
        if body != note.body:
            note.body = body
            bodies.append(note)
    Note.objects.bulk_update(bodies, ["body"])
    _issues_touched(notes)
    _message_ids_record([(item.issue, item.message_id) for item in items])
    notes_added([note for note, item in zip(notes, items, strict=True) if item.notify])
    # The team: customers' replies, and members' comments and internal notes (a member who
    # comments has dealt with their To-Dos on that ticket).
    notifications.notes_posted(
        [n for n in notes if not n.system and (n.external_author or not n.author.is_bot)]
    )
    webhooks.notes_posted(notes)
    for note in notes:
        if not note.system and not note.author.is_bot:
            notifications.todos_done(user=note.author, issues=[note.issue])
    return notes


def _issues_touched(notes: Sequence[Note]) -> None:
    """Bump the notes' issues, and record who spoke last in public (a note from email is the
    customer's, any other public comment the team's): two UPDATEs at most."""
    if not notes:
        return
    now = max(note.created_at for note in notes)
    last: dict[int, str] = {}
    for note in notes:
        if not note.internal and not note.system:
            last[note.issue_id] = Speaker.CUSTOMER if note.external_author else Speaker.TEAM
    spoken = set(last)
    Issue.objects.filter(pk__in={n.issue_id for n in notes} - spoken).update(updated_at=now)
    for speaker in (Speaker.CUSTOMER, Speaker.TEAM):
        ids = [pk for pk, by in last.items() if by == speaker]
        if ids:
            Issue.objects.filter(pk__in=ids).update(
                updated_at=now, last_public_by=speaker, last_public_at=now
            )
    if last:
        issues = {note.issue_id: note.issue for note in notes}
        # A customer's word wakes a snoozed ticket.
        customers = [pk for pk, by in last.items() if by == Speaker.CUSTOMER]
        if customers:
            _wake_on_customer_reply(customers)
        sla.clocks_spoken(issues.values(), last, at=now)


def note_create(
    *,
    issue: Issue,
    author: User,
    body: str,
    internal: bool = False,
    system: bool = False,
    external_author: str = "",
    files: Sequence[File] = (),
    from_non_participant: bool = False,
    quoted: str = "",
    notify: bool = False,
) -> Note:
    """A comment; ``files`` (uploaded in the browser) are stored as the note's uploads and
    linked below its text (images shown inline). ``from_non_participant``: an email reply held
    back as an internal note (see ``note_make_public``). ``notify``: email the participants."""
    [note] = notes_create(
        [
            NewNote(
                issue=issue,
                author=author,
                body=body,
                internal=internal,
                system=system,
                external_author=external_author,
                files=files,
                from_non_participant=from_non_participant,
                quoted=quoted,
                notify=notify,
            )
        ]
    )
    return note


@dataclass
class NotePosted:
    """A comment from the issue page: the note (None when it held only quick actions), what
    its quick actions did and refused, and the issue to show (a ``/move``'s copy)."""

    note: Note | None
    issue: Issue
    actions: QuickActionResult | None = None
    closed: bool = False  # ``close`` closed the issue (it was open)


@transaction.atomic
def note_post(
    *,
    issue: Issue,
    author: User,
    body: str,
    internal: bool = False,
    files: Sequence[File] = (),
    quick_actions: bool = False,
    close: bool = False,
) -> NotePosted:
    """A member's comment in the browser, emailed to the participants when public. With
    ``quick_actions`` (the view decided the author may run them) its command lines are carried
    out first and taken out of the text; a comment of commands only posts no note. ``close``
    (*Send & close*; the view checked ``can_update_issue``) closes the issue after the note,
    in the same transaction, so the reply's email goes out before the "closed" one. A ``/move``
    runs last, after the note is posted, so the comment goes with the issue to its copy."""
    actions = None
    if quick_actions:
        actions = apply_quick_actions(issue=issue, text=body, user=author)
        body = actions.text
    note = None
    if body.strip() or files:
        note = note_create(
            issue=issue, author=author, body=body, internal=internal, files=files, notify=True
        )
    closed = False
    if close:
        # A /close in the text may have closed it already: say "closed" once.
        closed = Issue.objects.filter(pk=issue.pk, state=Issue.State.OPENED).exists()
        issue_close(issue=issue, user=author)
    if actions is not None:
        issue = quick_actions_finish(actions)
    return NotePosted(note=note, issue=issue, actions=actions, closed=closed)


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
    if closing:
        sla.clock_closed(locked, at=locked.updated_at)
    else:
        sla.clock_reopened(locked, at=locked.updated_at)
    note_create(issue=locked, author=user, body="closed" if closing else "reopened", system=True)
    if closing:
        issue_closed(locked)  # the optional "issue closed" email, sent after commit
        if not user.is_bot:
            notifications.todos_done(user=user, issues=[locked])
    notifications.state_changed(locked, user)
    webhooks.issue_changed(
        locked, user, action="close" if closing else "reopen",
        changes={"state": {"previous": Issue.State.OPENED if closing else Issue.State.CLOSED,
                           "current": state}},
    )  # fmt: skip
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


def _safe_filename(name: str) -> str:
    """A browser-supplied name without directories or control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or "file"


def _files_store(
    entries: Sequence[tuple[Issue, Note | None, Sequence[IncomingFile | File]]],
    uploaded_by: User | None,
) -> list[list[tuple[IncomingFile | File, Upload]]]:
    """Each entry's files written to storage, then one INSERT for all their uploads; returns
    (file, upload) pairs per entry."""
    pairs: list[list[tuple[IncomingFile | File, Upload]]] = []
    for issue, note, files in entries:
        stored = []
        for file in files:
            if isinstance(file, File):  # from a browser: its name and type are the client's
                name, content_type, content = _safe_filename(file.name or "file"), "", file
                size = file.size or 0
            else:
                name, content_type = file.filename, file.content_type
                content, size = ContentFile(file.content), len(file.content)
            upload = Upload(
                project_id=issue.project_id,
                issue=issue,
                note=note,
                filename=name,
                content_type=content_type or getattr(file, "content_type", "") or "",
                size=size,
                uploaded_by=uploaded_by,
            )
            upload.content_type = upload.content_type or "application/octet-stream"
            upload.file.save(name, content, save=False)
            stored.append((file, upload))
        pairs.append(stored)
    Upload.objects.bulk_create([upload for stored in pairs for _, upload in stored])
    return pairs


def upload_create(
    *,
    issue: Issue,
    filename: str,
    content: bytes,
    content_type: str,
    uploaded_by: User | None,
    note: Note | None = None,
) -> Upload:
    file = _EmailFile(filename=filename, content_type=content_type, content=content)
    [[(_stored, upload)]] = _files_store([(issue, note, [file])], uploaded_by)
    return upload


@dataclass
class _EmailFile:
    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None


_CID_LINK = re.compile(r"\]\(\s*<?cid:([^\s)>]+)>?", re.IGNORECASE)


def _with_files(text: str, stored: Sequence[tuple[IncomingFile | File, Upload]]) -> list[str]:
    """(text, links): images an email's HTML showed by ``cid:`` stay where they were, pointing
    at their upload; the other files are listed below the text."""
    by_cid: dict[str, str] = {}
    links: list[str] = []
    for file, upload in stored:
        markdown = upload_markdown(upload)
        content_id = (getattr(file, "content_id", None) or "").strip().strip("<>")
        if content_id and f"cid:{content_id}".lower() in text.lower():
            by_cid[content_id.lower()] = reverse("upload", args=[upload.pk, upload.filename])
        else:
            links.append(markdown)
    if by_cid:

        def replace(match: re.Match[str]) -> str:
            url = by_cid.get(unquote(match[1]).lower())
            return f"]({url}" if url else match[0]

        text = _CID_LINK.sub(replace, text)
    return [text, "\n".join(link if link.startswith("!") else f"- {link}" for link in links)]


def upload_markdown(upload: Upload) -> str:
    """How an upload appears in a description or note: images inline, other files as links."""
    url = reverse("upload", args=[upload.pk, upload.filename])
    label = upload.filename.replace("[", "(").replace("]", ")")
    return f"![{label}]({url})" if upload.is_image else f"[{label}]({url})"


# --- The issue page: labels, assignees, confidentiality, participants, moving, converting ------
#
# Permissions are the views' business (projects.permissions); these enforce the product's rules
# (SPEC §4, §10) whoever calls them. Every change leaves a system note; a note that names an
# email address is internal, because only Reporter+ may see customer addresses (SPEC §8).


def _plural(word: str, names: Sequence[str]) -> str:
    return f"{word}{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _changes_sentence(
    added: Sequence[str], removed: Sequence[str], *, add: str, remove: str
) -> str:
    parts = []
    if added:
        parts.append(f"{add} {', '.join(added)}")
    if removed:
        parts.append(f"{remove} {', '.join(removed)}")
    return " and ".join(parts)


@transaction.atomic
def issue_labels_set(*, issue: Issue, user: User, labels: Iterable[Label]) -> Issue:
    """Make the issue's labels exactly ``labels`` (all from its project)."""
    wanted = {label.pk: label for label in labels}
    locked, _changed = _labels_change(issue, user, lambda current: wanted)
    return locked


@transaction.atomic
def issue_labels_change(
    *, issue: Issue, user: User, add: Iterable[Label] = (), remove: Iterable[Label] = ()
) -> bool:
    """Add and remove labels (all from its project), keeping the others; whether anything
    changed. The current labels are read under the row's lock: a label someone else added
    meanwhile stays."""
    adding = {label.pk: label for label in add}
    removing = {label.pk for label in remove}

    def wanted(current: dict[int, Label]) -> dict[int, Label]:
        kept = {pk: label for pk, label in current.items() if pk not in removing}
        return kept | adding

    return _labels_change(issue, user, wanted)[1]


def _labels_change(
    issue: Issue, user: User, wanting: Callable[[dict[int, Label]], dict[int, Label]]
) -> tuple[Issue, bool]:
    locked = Issue.objects.select_for_update().get(pk=issue.pk)
    current = {label.pk: label for label in locked.labels.all()}
    wanted = wanting(current)
    if any(label.project_id != issue.project_id for label in wanted.values()):
        raise ValidationError(_("Labels must belong to the issue's project."))
    added = sorted((wanted[pk] for pk in wanted.keys() - current.keys()), key=str)
    removed = sorted((current[pk] for pk in current.keys() - wanted.keys()), key=str)
    if not added and not removed:
        return locked, False
    if removed:
        locked.labels.remove(*removed)
    if added:
        locked.labels.add(*added)
    parts = []
    if added:
        parts.append(f"added {_plural('label', [label.title for label in added])}")
    if removed:
        parts.append(f"removed {_plural('label', [label.title for label in removed])}")
    note_create(issue=locked, author=user, body=" and ".join(parts), system=True)
    webhooks.labels_changed(locked, user, previous=current.values(), current=wanted.values())
    sla.clocks_retarget(project_id=locked.project_id, issue_ids=[locked.pk])  # ~label targets
    return locked, True


@transaction.atomic
def issue_assignees_set(*, issue: Issue, user: User, assignees: Iterable[User]) -> Issue:
    """Make the issue's assignees exactly ``assignees``; each must be able to be assigned in
    the issue's project (``permissions.ASSIGNABLE_ROLE``)."""
    wanted = _assignable(issue, assignees)
    locked, _changed = _assignees_change(issue, user, lambda current: wanted)
    return locked


@transaction.atomic
def issue_assignees_change(
    *,
    issue: Issue,
    user: User,
    add: Iterable[User] = (),
    remove: Iterable[User] = (),
    remove_all: bool = False,
) -> bool:
    """Assign ``add`` (each assignable) and unassign ``remove`` (or everyone), keeping the
    others; whether anything changed. Read under the row's lock, like ``issue_labels_change``."""
    adding = _assignable(issue, add)
    removing = {person.pk for person in remove}

    def wanted(current: dict[int, User]) -> dict[int, User]:
        kept = {} if remove_all else {pk: u for pk, u in current.items() if pk not in removing}
        return kept | adding

    return _assignees_change(issue, user, wanted)[1]


def _assignable(issue: Issue, people: Iterable[User]) -> dict[int, User]:
    wanted_ids = {person.pk for person in people}
    if not wanted_ids:
        return {}
    wanted = {u.pk: u for u in assignable_users(project=issue.project).filter(pk__in=wanted_ids)}
    if len(wanted) != len(wanted_ids):
        raise ValidationError(
            _("Only project members with the Reporter role or higher can be assigned.")
        )
    return wanted


def _assignees_change(
    issue: Issue, user: User, wanting: Callable[[dict[int, User]], dict[int, User]]
) -> tuple[Issue, bool]:
    locked = Issue.objects.select_for_update().get(pk=issue.pk)
    current = {u.pk: u for u in locked.assignees.all()}
    wanted = wanting(current)
    added = sorted((wanted[pk] for pk in wanted.keys() - current.keys()), key=lambda u: u.username)
    removed = sorted(
        (current[pk] for pk in current.keys() - wanted.keys()), key=lambda u: u.username
    )
    if not added and not removed:
        return locked, False
    if removed:
        locked.assignees.remove(*removed)
    if added:
        locked.assignees.add(*added)
        notifications.assignees_added(locked, added, user)
    webhooks.assignees_changed(locked, user, previous=current.values(), current=wanted.values())
    body = _changes_sentence(
        [f"@{u.username}" for u in added],
        [f"@{u.username}" for u in removed],
        add="assigned to",
        remove="unassigned",
    )
    note_create(issue=locked, author=user, body=body, system=True)
    return locked, True


def confidentiality_required(issue: Issue) -> bool:
    """An issue that came by email (it has a requester) in a public project must stay
    confidential: its thread holds a customer's words (SPEC §4)."""
    return issue.is_service_desk and issue.project.is_public


@transaction.atomic
def issue_confidentiality_set(*, issue: Issue, user: User, confidential: bool) -> Issue:
    locked = Issue.objects.select_for_update().select_related("project").get(pk=issue.pk)
    if locked.confidential == confidential:
        return locked
    if not confidential and confidentiality_required(locked):
        raise ValidationError(
            "Service Desk issues in public projects are always confidential: the customer's "
            "words must not become public."
        )
    locked.confidential = confidential
    locked.save(update_fields=["confidential", "updated_at"])
    body = "made the issue confidential" if confidential else "made the issue visible to everyone"
    note_create(issue=locked, author=user, body=body, system=True)
    webhooks.issue_changed(locked, user, action="update", changes={
        "confidential": {"previous": not confidential, "current": confidential},
    })  # fmt: skip
    return locked


# --- Snooze ---------------------------------------------------------------------------------------


def _snooze_text(until: datetime | None) -> str:
    if until is None:
        return "until the customer replies"
    return f"until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@transaction.atomic
def issue_snooze(*, issue: Issue, user: User, until: datetime | None) -> Issue:
    """Take an open ticket out of the open views until ``until`` (None: until the customer
    writes again). Its response clock pauses; a customer's email wakes it early."""
    locked = Issue.objects.select_for_update().get(pk=issue.pk)
    now = timezone.now()
    if not locked.is_open:
        raise ValidationError(_("Only open issues can be snoozed."))
    if until is not None and until <= now:
        raise ValidationError(_("Snooze until a time in the future."))
    locked.snoozed_at, locked.snoozed_until, locked.snoozed_by = now, until, user
    locked.save(update_fields=["snoozed_at", "snoozed_until", "snoozed_by", "updated_at"])
    note_create(issue=locked, author=user, body=f"snoozed {_snooze_text(until)}", system=True)
    sla.clock_paused(locked, at=now)
    return locked


@transaction.atomic
def issue_unsnooze(*, issue: Issue, user: User) -> Issue:
    """Wake a snoozed ticket by hand (no To-Do: whoever does it is looking at it)."""
    locked = Issue.objects.select_for_update().get(pk=issue.pk)
    if locked.is_snoozed:
        _wake(locked, by=user, why="")
    return locked


def _wake(issue: Issue, *, by: User | None, why: str) -> None:
    """Back in the open views, the clock running again; unless a person woke it, its
    assignees (or whoever snoozed it) get a To-Do and an email."""
    now = timezone.now()
    snoozed_by = issue.snoozed_by_id
    issue.snoozed_at = issue.snoozed_until = issue.snoozed_by = None
    issue.save(update_fields=["snoozed_at", "snoozed_until", "snoozed_by", "updated_at"])
    body = f"woke up: {why}" if why else "unsnoozed"
    note_create(issue=issue, author=by or support_bot(), body=body, system=True)
    sla.clock_resumed(issue, at=now)
    if by is None:
        notifications.snooze_ended(issue, snoozed_by=snoozed_by, why=why)


def _wake_on_customer_reply(issue_ids: Iterable[int]) -> None:
    snoozed = Issue.objects.select_for_update().filter(
        pk__in=list(issue_ids), snoozed_at__isnull=False
    )
    for issue in snoozed:
        _wake(issue, by=None, why="the customer replied")


def issues_wake(*, limit: int = 500) -> int:
    """The beat's round: tickets whose snooze has ended wake up, each in its own transaction
    (claimed under the row's lock, so two rounds never wake one twice)."""
    woken = 0
    due = Issue.objects.filter(snoozed_until__lte=timezone.now()).order_by("snoozed_until")
    for pk in list(due.values_list("pk", flat=True)[:limit]):
        with transaction.atomic():
            issue = (
                Issue.objects.select_for_update()
                .filter(pk=pk, snoozed_until__lte=timezone.now())
                .first()
            )
            if issue is not None:
                _wake(issue, by=None, why="the snooze ended")
                woken += 1
    return woken


# --- Bulk edit (the tracker) ---------------------------------------------------------------------

BULK_ACTIONS = {
    "add_labels": "Add labels",
    "remove_labels": "Remove labels",
    "assign": "Assign",
    "unassign": "Unassign",
    "close": "Close",
    "reopen": "Reopen",
    "confidential": "Make confidential",
    "not_confidential": "Make not confidential",
}
# Why an issue was left alone.
MUST_STAY_CONFIDENTIAL = "Service Desk issues in public projects stay confidential"


@dataclass
class BulkEdit:
    """What a bulk edit did: the issues it changed, those already so, those it left alone
    (with why)."""

    changed: list[Issue] = field(default_factory=list)
    unchanged: list[Issue] = field(default_factory=list)
    skipped: dict[str, list[Issue]] = field(default_factory=dict)


@transaction.atomic
def issues_bulk_edit(
    *,
    issues: Sequence[Issue],
    user: User,
    action: str,
    labels: Sequence[Label] = (),
    assignees: Sequence[User] = (),
) -> BulkEdit:
    """One action on many issues, in one transaction, each through the service the issue
    page uses (its system note, its notifications). Permissions are the caller's business
    (it passes only the issues the user may change); the product's rules are kept here: a
    Service Desk issue of a public project is skipped rather than made public."""
    result = BulkEdit()
    for issue in issues:
        reason = _bulk_refusal(issue, action)
        if reason:
            result.skipped.setdefault(reason, []).append(issue)
            continue
        try:
            changed = _bulk_apply(issue, user, action, labels, assignees)
        except ValidationError as error:  # changed meanwhile (the service's savepoint undid it)
            result.skipped.setdefault(" ".join(error.messages), []).append(issue)
            continue
        (result.changed if changed else result.unchanged).append(issue)
    return result


def _bulk_refusal(issue: Issue, action: str) -> str:
    if action == "not_confidential" and issue.confidential and confidentiality_required(issue):
        return MUST_STAY_CONFIDENTIAL
    return ""


def _bulk_apply(
    issue: Issue, user: User, action: str, labels: Sequence[Label], assignees: Sequence[User]
) -> bool:
    if action == "add_labels":
        return issue_labels_change(issue=issue, user=user, add=labels)
    if action == "remove_labels":
        return issue_labels_change(issue=issue, user=user, remove=labels)
    if action == "assign":
        return issue_assignees_change(issue=issue, user=user, add=assignees)
    if action == "unassign":
        return issue_assignees_change(
            issue=issue, user=user, remove=assignees, remove_all=not assignees
        )
    if action in ("close", "reopen"):
        state = Issue.State.CLOSED if action == "close" else Issue.State.OPENED
        return _issue_set_state(issue=issue, user=user, state=state).state != issue.state
    if action in ("confidential", "not_confidential"):
        wanted = action == "confidential"
        locked = issue_confidentiality_set(issue=issue, user=user, confidential=wanted)
        return locked.confidential != issue.confidential
    raise ValueError(f"Unknown bulk action {action!r}")


def _clean_email(email: str) -> str:
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError(f"{email or 'That'} is not a valid email address.") from None
    if len(email) > 320:
        raise ValidationError(_("That email address is too long."))
    if is_our_address(email) or _is_a_projects_own_address(email):
        raise ValidationError(_("That is one of this Service Desk's own addresses."))
    return email


def _is_a_projects_own_address(email: str) -> bool:
    """A project's own (custom) address, or one of its +key forms: mail to it comes back."""
    local, _, domain = email.strip().lower().rpartition("@")
    base = f"{local.partition('+')[0]}@{domain}"
    return CustomEmail.objects.annotate(lowered=Lower("address")).filter(lowered=base).exists()


def _room(participants: int) -> int:
    """How many more email participants an issue with ``participants`` may have."""
    return max(0, settings.SERVICEDESK_MAX_PARTICIPANTS - participants)


def _participant_room_check(issue: Issue, email: str) -> None:
    participants = EmailParticipant.objects.filter(issue=issue)
    if participants.filter(email__iexact=email).exists():
        raise ValidationError(_("%(email)s is already a participant.") % {"email": email})
    if not _room(participants.count()):
        limit = settings.SERVICEDESK_MAX_PARTICIPANTS
        raise ValidationError(
            _("An issue can have at most %(limit)s email participants.") % {"limit": limit}
        )


@transaction.atomic
def issue_participant_add(*, issue: Issue, user: User, email: str) -> EmailParticipant:
    """A team member adds an email participant: they get the issue's public comments from now
    on. No *new participant* email is sent (as in GitLab, a manual add is silent); the next
    public comment reaches them. At most SERVICEDESK_MAX_PARTICIPANTS per issue."""
    email = _clean_email(email)
    Issue.objects.select_for_update().filter(pk=issue.pk).first()  # serialise adds per issue
    _participant_room_check(issue, email)
    participant = EmailParticipant.objects.create(issue=issue, email=email)
    note_create(
        issue=issue, author=user, body=f"added {email} as participant", system=True, internal=True
    )
    return participant


@transaction.atomic
def issue_participant_remove(*, participant: EmailParticipant, user: User) -> None:
    """Stop emailing a participant and forget them; replies they send later still arrive, shown
    as "not a participant"."""
    issue = participant.issue
    participant.delete()
    note_create(
        issue=issue,
        author=user,
        body=f"removed {participant.email} as participant",
        system=True,
        internal=True,
    )


@transaction.atomic
def participant_bouncing_clear(*, participant: EmailParticipant, user: User) -> bool:
    """A member clears a bouncing participant: emails go to it again (SPEC §3)."""
    if participant.bouncing_at is None:
        return False
    participant.bouncing_at = None
    participant.save(update_fields=["bouncing_at"])
    note_create(
        issue=participant.issue,
        author=user,
        body=f"cleared the bouncing state of {participant.email}: emails go to it again",
        system=True,
        internal=True,
    )
    return True


@transaction.atomic
def note_make_public(*, note: Note, user: User) -> bool:
    """A Reporter+ releases an email reply that was held back because its sender is not a
    participant: the note becomes public and the participants get it by email, as if it had
    come from one of them. False if it was not held (already released, or never held)."""
    held = Note.objects.select_for_update().filter(pk=note.pk, from_non_participant=True)
    if not held.update(internal=False, from_non_participant=False):
        return False
    note.internal, note.from_non_participant = False, False
    # Now a public word of the customer's: the ticket waits for us, if nothing came after it.
    if (
        Issue.objects.filter(pk=note.issue_id)
        .filter(
            models.Q(last_public_at__isnull=True) | models.Q(last_public_at__lte=note.created_at)
        )
        .update(last_public_by=Speaker.CUSTOMER, last_public_at=note.created_at)
    ):
        sla.clocks_spoken([note.issue], {note.issue_id: Speaker.CUSTOMER}, at=note.created_at)
    note_create(
        issue=note.issue,
        author=user,
        body="made an email reply from a non-participant public",
        system=True,
    )
    note_added(note)
    return True


@transaction.atomic
def issue_convert_to_service_desk(*, issue: Issue, user: User, email: str) -> Issue:
    """Turn a normal issue into a Service Desk issue with ``email`` as its requester (SPEC §10),
    as the mailroom would have made it: Support Bot becomes the author, the requester a
    participant, and the issue confidential when the project wants tickets confidential (always
    in public projects). Like GitLab's ``/convert_to_ticket``, no *thank you* email is sent:
    the requester hears from the next public comment."""
    email = _clean_email(email)
    locked = Issue.objects.select_for_update().select_related("project", "author").get(pk=issue.pk)
    if locked.is_service_desk:
        raise ValidationError(_("This issue is already a Service Desk issue."))
    setting = ServiceDeskSetting.objects.filter(project_id=locked.project_id).first()
    if setting is None or not setting.service_desk_enabled:
        raise ValidationError(_("Service Desk is off in this project: turn it on first."))
    if not EmailParticipant.objects.filter(issue=locked, email__iexact=email).exists():
        _participant_room_check(locked, email)
        EmailParticipant.objects.create(issue=locked, email=email)
    original_author = locked.author
    locked.external_author = email
    locked.service_desk_reply_to = ""
    locked.author = support_bot()
    became_confidential = not locked.confidential and (
        setting.tickets_confidential_by_default or locked.project.is_public
    )
    locked.confidential = locked.confidential or became_confidential
    locked.save(
        update_fields=[
            "external_author", "service_desk_reply_to", "author", "confidential", "updated_at"
        ]
    )  # fmt: skip
    note_create(
        issue=locked,
        author=user,
        body=f"converted this issue into a Service Desk issue for {email} "
        f"(opened by @{original_author.username})",
        system=True,
        internal=True,
    )
    if became_confidential:
        note_create(issue=locked, author=user, body="made the issue confidential", system=True)
    return locked


@transaction.atomic
def issue_move(*, issue: Issue, user: User, target: Project) -> Issue:
    """Move an issue to another project (SPEC §10) the way GitLab does: a copy is created in
    ``target`` and the original is closed, pointing to it (``moved_to``).

    The copy gets the thread (every note, with its time), the files, the labels the target has
    (by title), the assignees who can be assigned there, the requester and the email
    participants. The reply keys already sent now belong to the copy, so a customer's reply or
    unsubscribe reaches it (the mailroom also follows ``moved_to`` for older keys and threads),
    and the customer keeps getting emails if the target has Service Desk on. Nothing is emailed
    by the move itself.
    """
    locked = Issue.objects.select_for_update().select_related("project").get(pk=issue.pk)
    if locked.moved_to_id is not None:
        raise ValidationError(_("This issue was already moved."))
    if target.pk == locked.project_id:
        raise ValidationError(_("The issue is already in that project."))
    copy = Issue.objects.create(
        project=target,
        iid=issue_iids_allocate(project_id=target.pk)[0],
        title=locked.title,
        description=locked.description,
        author_id=locked.author_id,
        # Confidential stays confidential; a Service Desk issue becomes so in a public target.
        confidential=locked.confidential or (locked.is_service_desk and target.is_public),
        state=locked.state,
        closed_at=locked.closed_at,
        closed_by_id=locked.closed_by_id,
        external_author=locked.external_author,
        external_author_name=locked.external_author_name,
        service_desk_reply_to=locked.service_desk_reply_to,
        last_public_by=locked.last_public_by,
        last_public_at=locked.last_public_at,
    )
    titles = [label.title for label in locked.labels.all()]
    if titles:
        copy.labels.set(Label.objects.filter(project=target, title__in=titles))
    assignee_ids = [u.pk for u in locked.assignees.all()]
    if assignee_ids:
        copy.assignees.set(assignable_users(project=target).filter(pk__in=assignee_ids))
    notes = _move_notes(locked, copy)
    links = _move_uploads(locked, copy, notes)
    if links:
        copy.description = _rewrite_links(copy.description, links)
        copy.save(update_fields=["description"])
        changed = []
        for note in notes.values():
            body = _rewrite_links(note.body, links)
            if body != note.body:
                note.body = body
                changed.append(note)
        Note.objects.bulk_update(changed, ["body"])
    _move_participants(locked, copy)
    IssueEmail.objects.bulk_create(
        [
            IssueEmail(issue=copy, message_id=e.message_id, direction=e.direction)
            for e in locked.emails.all()
        ],
        ignore_conflicts=True,
    )
    note_create(
        issue=copy, author=user, body=f"moved this issue from {locked.reference}", system=True
    )
    locked.moved_to = copy
    note_create(
        issue=locked, author=user, body=f"moved this issue to {copy.reference}", system=True
    )
    moved: dict[str, dict[str, object]] = {"moved_to_id": {"previous": None, "current": copy.pk}}
    if locked.is_open:
        moved["state"] = {"previous": Issue.State.OPENED, "current": Issue.State.CLOSED}
        # Closed quietly: the optional *issue closed* email must not tell the customer their
        # issue was closed when it just moved.
        locked.state = Issue.State.CLOSED
        locked.closed_at = timezone.now()
        locked.closed_by = user
        note_create(issue=locked, author=user, body="closed", system=True)
    locked.save(update_fields=["moved_to", "state", "closed_at", "closed_by", "updated_at"])
    copy.project = target
    # As GitLab: the copy is a new issue of its project, the original is closed (or updated).
    webhooks.issues_opened([copy], user)
    webhooks.issue_changed(
        locked, user, action="close" if "state" in moved else "update", changes=moved
    )
    return copy


@transaction.atomic
def issue_merge(*, issue: Issue, user: User, target: Issue) -> Issue:
    """Merge a ticket into another of the same project: its thread (the customer's first
    message included, as a note), files and participants move to ``target`` in time order,
    each note marked as merged; the reply keys and Message-IDs of its emails now lead to
    ``target``; it is closed with a link. Its customer gets one email saying where the
    conversation continues (if the project sends it). Nothing is deleted. Returns ``target``.
    """
    first, second = sorted([issue.pk, target.pk])
    locked = {
        i.pk: i
        for i in Issue.objects.select_for_update()
        .select_related("project")
        .filter(pk__in=[first, second])
    }
    source, into = locked[issue.pk], locked[target.pk]
    if source.pk == into.pk:
        raise ValidationError(_("A ticket cannot be merged into itself."))
    if source.project_id != into.project_id:
        raise ValidationError(_("Tickets merge only within their project."))
    for one in (source, into):
        if one.moved_to_id is not None or one.merged_into_id is not None:
            raise ValidationError(
                _("%(ref)s was moved or merged already.") % {"ref": f"#{one.iid}"}
            )
    now = timezone.now()
    if source.description.strip():
        # The customer's first message, where the rest of the thread goes.
        opening = Note.objects.create(
            issue=into, author_id=source.author_id, body=source.description,
            external_author=source.external_author, external_name=source.external_author_name,
            merged_from=source,
        )  # fmt: skip
        Note.objects.filter(pk=opening.pk).update(created_at=source.created_at)
    Note.objects.filter(issue=source).update(issue=into, merged_from=source)
    Upload.objects.filter(issue=source).update(issue=into)
    moved = _merge_participants(source, into)
    IssueEmail.objects.bulk_create(
        [
            IssueEmail(issue=into, message_id=e.message_id, direction=e.direction)
            for e in source.emails.all()
        ],
        ignore_conflicts=True,
    )
    _merge_waiting(source, into)
    sla.clock_merged(source, into)
    note_create(issue=into, author=user, body=f"merged #{source.iid} into this issue", system=True)
    source.merged_into = into
    source.snoozed_at = source.snoozed_until = source.snoozed_by = None
    changes: dict[str, dict[str, object]] = {
        "merged_into_id": {"previous": None, "current": into.pk}
    }
    if source.is_open:
        # Closed quietly: the *issue closed* email would tell the customer it is over.
        changes["state"] = {"previous": Issue.State.OPENED, "current": Issue.State.CLOSED}
        source.state, source.closed_at, source.closed_by = Issue.State.CLOSED, now, user
    source.save(
        update_fields=[
            "merged_into", "state", "closed_at", "closed_by", "snoozed_at", "snoozed_until",
            "snoozed_by", "updated_at",
        ]
    )  # fmt: skip
    note_create(issue=source, author=user, body=f"merged into #{into.iid}", system=True)
    issue_merged(source, into, moved)
    webhooks.issue_changed(
        source, user, action="close" if "state" in changes else "update", changes=changes
    )
    return into


def _merge_participants(source: Issue, into: Issue) -> list[EmailParticipant]:
    """The merged ticket's participants join the target (one per address); every reply key
    sent for the merged ticket now names the target and the participant there. Returns the
    merged ticket's participants as they are on the target."""
    theirs = list(source.email_participants.all())
    ours = {p.email.lower(): p for p in into.email_participants.all()}
    joining = [p for p in theirs if p.email.lower() not in ours]
    EmailParticipant.objects.filter(pk__in=[p.pk for p in joining]).update(issue=into)
    for participant in joining:
        participant.issue = into
        ours[participant.email.lower()] = participant
    mapping = [
        When(participant_id=p.pk, then=Value(ours[p.email.lower()].pk))
        for p in theirs
        if p not in joining
    ]
    sent = SentNotification.objects.filter(issue=source)
    if mapping:
        sent.update(
            issue=into,
            participant=Case(
                *mapping, default=F("participant"), output_field=models.IntegerField()
            ),
        )
    else:
        sent.update(issue=into)
    return [ours[p.email.lower()] for p in theirs]


def _merge_waiting(source: Issue, into: Issue) -> None:
    """Who spoke last in public on the merged thread: the later word of the two tickets."""
    if source.last_public_at is None:
        return
    if into.last_public_at is None or source.last_public_at > into.last_public_at:
        into.last_public_by, into.last_public_at = source.last_public_by, source.last_public_at
        into.save(update_fields=["last_public_by", "last_public_at", "updated_at"])


def _move_notes(old: Issue, new: Issue) -> dict[int, Note]:
    """Copy the thread, keeping each note's time (auto_now_add would stamp them all "now")."""
    originals = list(old.notes.order_by("created_at", "id"))
    copies = Note.objects.bulk_create(
        [
            Note(issue=new, author_id=n.author_id, body=n.body, internal=n.internal,
                 system=n.system, external_author=n.external_author,
                 external_name=n.external_name, quoted=n.quoted,
                 from_non_participant=n.from_non_participant)
            for n in originals
        ]
    )  # fmt: skip
    pairs = list(zip(originals, copies, strict=True))
    if pairs:
        times = [When(pk=c.pk, then=Value(o.created_at)) for o, c in pairs]
        Note.objects.filter(pk__in=[c.pk for c in copies]).update(
            created_at=Case(*times, output_field=models.DateTimeField())
        )
    return {o.pk: c for o, c in pairs}


def _move_uploads(old: Issue, new: Issue, notes: dict[int, Note]) -> dict[str, str]:
    """The issue's files as uploads of the copy (same stored file: nothing is duplicated on
    disk), so the target project's members can open them. Returns old path → new path."""
    originals = list(Upload.objects.filter(issue=old))
    copies = Upload.objects.bulk_create(
        [
            Upload(project_id=new.project_id, issue=new,
                   note=notes.get(u.note_id) if u.note_id else None, file=u.file.name,
                   filename=u.filename, content_type=u.content_type, size=u.size,
                   uploaded_by_id=u.uploaded_by_id)
            for u in originals
        ]
    )  # fmt: skip
    return {
        reverse("upload", args=[o.pk, o.filename]): reverse("upload", args=[c.pk, c.filename])
        for o, c in zip(originals, copies, strict=True)
    }


def _rewrite_links(text: str, links: dict[str, str]) -> str:
    """Replace every old file path by its copy's, in one pass (a replaced path is never
    looked at again)."""
    if "/-/uploads/" not in text:
        return text
    pattern = re.compile("|".join(re.escape(path) for path in sorted(links, key=len, reverse=True)))
    return pattern.sub(lambda match: links[match.group(0)], text)


def _move_participants(old: Issue, new: Issue) -> None:
    """Participants are copied (the old issue keeps its record); every reply key sent for the
    old issue now names the copy and the participant's copy, so a reply lands on the new issue
    and an unsubscribe stops the emails that the new issue sends."""
    originals = list(old.email_participants.all())
    copies = EmailParticipant.objects.bulk_create(
        [
            EmailParticipant(issue=new, email=p.email, name=p.name,
                             unsubscribed_at=p.unsubscribed_at, bouncing_at=p.bouncing_at)
            for p in originals
        ]
    )  # fmt: skip
    sent = SentNotification.objects.filter(issue=old)
    if not copies:
        sent.update(issue=new)
        return
    mapping = [
        When(participant_id=o.pk, then=Value(c.pk)) for o, c in zip(originals, copies, strict=True)
    ]
    sent.update(
        issue=new,
        participant=Case(*mapping, default=F("participant"), output_field=models.IntegerField()),
    )
