"""Outbound Service Desk emails: rendered and recorded in the transaction that causes them.

``service_desk_issues_created`` is called by the mailroom in the transaction that created an
issue from email: the requester gets *thank you*, Cc'd participants *new participant*. Each
email gets its own reply key (a SentNotification) so replies and unsubscribes route back. The
rows are sent after commit by ``issues.tasks.send_outbound_emails``.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formataddr
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_lazy

from projects.models import CustomEmail, Project, ServiceDeskSetting
from projects.placeholders import PLACEHOLDER, unknown_placeholders
from projects.selectors import email_template_default
from servicedesk.addresses import normalise_mailbox
from servicedesk.queues import enqueue

from .markdown import MAX_MARKDOWN_CHARS, render_markdown, render_markdown_final
from .models import (
    EmailParticipant,
    Issue,
    IssueEmail,
    Note,
    OutboundEmail,
    SentNotification,
    Upload,
)
from .plaintext import MAX_HTML_CHARS, html_to_plain_text
from .selectors import upload_email_token

Kind = OutboundEmail.Kind
log = logging.getLogger(__name__)
# A header value must be one line: names and subjects come from users and customers.
_LINE_BREAKS = re.compile(r"[\r\n\x00]+")


def render_placeholders(
    template: str, values: dict[str, str], *, unknown: str | None = None
) -> str:
    """Replace ``%{NAME}`` / ``%{ NAME }`` by ``values[NAME]``. A placeholder not in ``values``
    becomes ``unknown``, or is left as written when that is None."""

    def value(match: re.Match[str]) -> str:
        found = values.get(match.group(1).strip())
        if found is not None:
            return found
        return match.group(0) if unknown is None else unknown

    return PLACEHOLDER.sub(value, template)


def _host() -> str:
    return urlsplit(settings.SITE_URL).hostname or "localhost"


def issue_message_id(issue: Issue) -> str:
    """The thread's root: the thank-you's Message-ID; later emails refer to it (SPEC §7).

    Random (the issue's thread token): an email that names it in In-Reply-To is threaded on the
    issue without a reply key, so it must not be guessable.
    """
    return f"<issue-{issue.thread_token}@{_host()}>"


# The root Message-ID of issues from before thread tokens: a sequential id anyone can guess.
# Replies naming one are still threaded, but only from an address that is a participant.
_LEGACY_ROOT = re.compile(r"<issue_\d+@[^<>\s]+>")


def is_guessable_message_id(message_id: str) -> bool:
    return _LEGACY_ROOT.fullmatch(message_id) is not None


# A Message-ID as RFC 5322 §3.6.4 writes it (dot-atom "@" dot-atom or a domain literal), within
# a length. A customer's Message-ID goes into our In-Reply-To and References, so it is hostile
# input: anything else (a line break, a second id, a 10 KB id, non-ASCII) is left out rather
# than repaired; threading is a nicety, a header we did not mean to write is not.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-"
_SAFE_MESSAGE_ID = re.compile(rf"<[{_ATEXT}]+@(?:[{_ATEXT}]+|\[[{_ATEXT}:]+\])>")
MAX_MESSAGE_ID_LENGTH = 250


def safe_message_id(value: str) -> str | None:
    """One ``<id@host>`` fit to be copied into a header, or None."""
    value = value.strip()
    if value and not value.startswith("<"):
        value = f"<{value}>"  # a client that writes the id without its brackets
    if len(value) > MAX_MESSAGE_ID_LENGTH or _SAFE_MESSAGE_ID.fullmatch(value) is None:
        return None
    return value


def _thread_roots(issues: Sequence[Issue]) -> dict[int, str]:
    """The Message-ID each issue's emails thread on: the thank-you of the issue it was moved
    from (through any number of moves), so a moved ticket stays one conversation in the
    customer's mail client. One query per move in the longest chain."""
    original = {issue.pk: issue for issue in issues}
    waiting = {issue.pk: issue.pk for issue in issues}  # issue we look behind → whose root
    for _ in range(20):  # a chain of moves; a cycle is impossible but never loop forever
        if not waiting:
            break
        earlier = Issue.objects.filter(moved_to_id__in=list(waiting)).only("pk", "thread_token")
        found = {}
        for issue in earlier:
            whose = waiting[issue.moved_to_id or 0]
            original[whose] = issue
            found[issue.pk] = whose
        waiting = found
    return {pk: issue_message_id(issue) for pk, issue in original.items()}


def _template_text(setting: ServiceDeskSetting, kind: str) -> str:
    """The project's own template, else the instance default file."""
    custom = getattr(setting, f"{kind}_template", "")
    # The raw file (our placeholders, not Django template syntax) from the template dirs, in
    # the project's language when there is a translation of it.
    return custom or email_template_default(kind, setting.language)


def _one_line(text: str) -> str:
    return " ".join(_LINE_BREAKS.sub(" ", text).split())


@dataclass
class _Draft:
    """An email and the rows that go with it, built before being saved (so batches can save
    many drafts with three INSERTs)."""

    sent: SentNotification
    email: OutboundEmail
    # Its Message-ID on the issue, so that replies to it thread (None: the reply key in its
    # Reply-To and References is enough, as for the team's notifications).
    record: IssueEmail | None


@lru_cache(maxsize=1)
def _unsubscribe_path() -> str:
    return reverse("unsubscribe", args=["TOKEN"])


_UPLOAD_PATH = re.compile(r"/-/uploads/(\d+)/([^\s()<>\"'\]\[]+)")


def email_links(text: str, issue: Issue) -> str:
    """Links to this issue's files, rewritten for an email: absolute, and signed so that the
    customer can open them without an account. Files of internal notes are never signed (a
    public comment may quote such a link); other links are left as they are."""
    if "/-/uploads/" not in text:
        return text
    site = settings.SITE_URL
    pattern = re.compile(f"(?:{re.escape(site)})?{_UPLOAD_PATH.pattern}")
    ids = {int(m.group(1)) for m in pattern.finditer(text)}
    uploads = {
        u.pk: u for u in Upload.objects.filter(pk__in=ids, issue=issue).exclude(note__internal=True)
    }

    def signed(match: re.Match[str]) -> str:
        upload = uploads.get(int(match.group(1)))
        if upload is None or not match.group(0).endswith(
            reverse("upload", args=[upload.pk, upload.filename])
        ):
            return match.group(0)
        return site + reverse("upload_by_token", args=[upload_email_token(upload), upload.filename])

    return pattern.sub(signed, text)


def _attachments(notes: Sequence[Note]) -> dict[int, list[int]]:
    """Each note's files as real attachments when they total at most the limit, else none (the
    note's text links them)."""
    files: dict[int, list[tuple[int, int]]] = {}
    for pk, note_id, size in Upload.objects.filter(note__in=notes).values_list(
        "pk", "note_id", "size"
    ):
        files.setdefault(note_id, []).append((pk, size))
    limit = settings.SERVICEDESK_EMAIL_ATTACHMENTS_MAX_SIZE
    return {
        note_id: [pk for pk, _ in pairs]
        for note_id, pairs in files.items()
        if sum(size for _, size in pairs) <= limit
    }


@dataclass(frozen=True)
class _Rendered:
    """An email's text and HTML for one recipient-to-be: ``placeholder_key`` stands where the
    recipient's unsubscribe token goes (a random 32-hex string, rendered exactly like one), and
    ``iid_token``, when set, where the issue's number goes (see ``_render``)."""

    text: str  # "": converted from the HTML per issue (a heading holds the number)
    html: str
    placeholder_key: str
    iid_token: str = ""

    def for_issue(self, issue: Issue, unsubscribe_token: str) -> tuple[str, str]:
        """The text and HTML of this email about ``issue``, to the owner of the token."""
        text, body_html = self.text, self.html
        if self.iid_token:
            body_html = body_html.replace(self.iid_token, str(issue.iid))
            # A heading's underline in the text is as long as the heading.
            text = (
                text.replace(self.iid_token, str(issue.iid))
                if text
                else html_to_plain_text(body_html)
            )
        return (
            text.replace(self.placeholder_key, unsubscribe_token),
            body_html.replace(self.placeholder_key, unsubscribe_token),
        )


# Rendered bodies of one batch of emails, by what they are rendered from.
Bodies = dict[tuple[object, ...], _Rendered]


def _iid_token(*texts: str) -> str:
    """A random 20-digit number found in none of ``texts``: it stands for an issue's number."""
    while True:
        token = str(10**19 + secrets.randbelow(9 * 10**19))
        if not any(token in text for text in texts):
            return token


def _render(
    kind: str,
    issue: Issue,
    setting: ServiceDeskSetting,
    note_text: str,
    author_name: str = "",
    bodies: Bodies | None = None,
) -> _Rendered:
    """The body of one email about ``issue``; ``bodies`` keeps what a batch rendered already.

    A template that does not show the issue's description differs between the issues of a
    project only in the issue's number (%{ISSUE_ID}, %{ISSUE_PATH}, %{ISSUE_URL}), so it is
    rendered once per project, kind and note text with a random 20-digit number in its place,
    which ``_Rendered.for_issue`` replaces by the issue's. Markdown, bleach and the plain-text
    conversion treat any number after "#" or "/" alike (it is never at the start of a line,
    where "1." would start a list), so the result is the one rendering per issue would give;
    only a heading's underline in the text depends on the number's length: a heading with the
    number has its text converted per issue.
    A text too long to be rendered (MAX_MARKDOWN_CHARS) or one that ran out of its render
    budget is rendered per issue, as is a template with %{ISSUE_DESCRIPTION}.
    """
    template = _template_text(setting, kind)
    shared = "ISSUE_DESCRIPTION" not in template
    key: tuple[object, ...] = (
        (kind, issue.project_id, template, note_text, author_name)
        if shared
        else (kind, issue.pk, note_text, author_name)
    )
    if bodies is not None and key in bodies:
        return bodies[key]
    if shared:
        texts = (template, note_text, author_name, *_system_texts())
        rendered = _render_with(kind, issue, setting, note_text, author_name, _iid_token(*texts))
        if rendered is None:  # with the issue's own, shorter number it may render: try that
            shared = False
    if not shared:
        rendered = _render_with(kind, issue, setting, note_text, author_name, "")
    assert rendered is not None
    if bodies is not None:
        bodies[key] = rendered
    return rendered


def _system_texts() -> tuple[str, str, str]:
    return (
        settings.SERVICEDESK_EMAIL_HEADER,
        settings.SERVICEDESK_EMAIL_FOOTER,
        settings.SERVICEDESK_EMAIL_ADDITIONAL_TEXT,
    )


def _render_with(
    kind: str,
    issue: Issue,
    setting: ServiceDeskSetting,
    note_text: str,
    author_name: str,
    iid_token: str,
) -> _Rendered | None:
    """The body rendered with ``iid_token`` (or, if "", the issue's number) as the issue's
    number; None if with the token it is too long or ran out of its render budget."""
    placeholder_key = secrets.token_hex(16)
    template = _template_text(setting, kind)
    iid, full_path = iid_token or str(issue.iid), issue.project.full_path
    values = {
        "ISSUE_ID": f"#{iid}",
        "ISSUE_PATH": f"{full_path}#{iid}",
        "ISSUE_URL": settings.SITE_URL + reverse("issue_detail", args=[full_path, iid]),
        "ISSUE_DESCRIPTION": (
            email_links(issue.description, issue) if "ISSUE_DESCRIPTION" in template else ""
        ),
        "NOTE_TEXT": note_text,
        "AUTHOR_NAME": _markdown_literal(author_name),
        "UNSUBSCRIBE_URL": settings.SITE_URL
        + _unsubscribe_path().replace("TOKEN", placeholder_key),
        "SYSTEM_HEADER": settings.SERVICEDESK_EMAIL_HEADER,
        "SYSTEM_FOOTER": settings.SERVICEDESK_EMAIL_FOOTER,
        "ADDITIONAL_TEXT": settings.SERVICEDESK_EMAIL_ADDITIONAL_TEXT,
    }
    # A placeholder we do not know is sent as nothing. GitLab (and SPEC §7) send it as written,
    # and customers then read "%{ISSUE_IDD}" in a mail that looks broken. The editor refuses
    # to save one (projects.placeholders), so only a template saved before that check, or an
    # instance default file edited on disk, can still hold one: better a missing word.
    source = render_placeholders(template, values, unknown="")
    if iid_token and len(source) > MAX_MARKDOWN_CHARS:
        return None
    rendered, final = render_markdown_final(source, remote_images=False)
    if iid_token and (not final or len(rendered) > MAX_HTML_CHARS):
        return None
    if iid_token and any(iid_token in heading.group(0) for heading in _HEADING.finditer(rendered)):
        return _Rendered("", rendered, placeholder_key, iid_token)
    return _Rendered(html_to_plain_text(rendered), rendered, placeholder_key, iid_token)


# A heading in bleach's output (headings do not nest).
_HEADING = re.compile(r"<h([1-6])\b.*?</h\1>", re.DOTALL)


def _draft(
    *,
    kind: str,
    issue: Issue,
    participant: EmailParticipant,
    setting: ServiceDeskSetting,
    note: Note | None = None,
    note_text: str = "",
    attachments: Sequence[int] = (),
    bodies: Bodies | None = None,
    root: str | None = None,
    customer_message_id: str | None = None,
    sender_name: str = "",
    author_name: str = "",
) -> _Draft:
    sent = SentNotification(
        issue=issue, participant=participant, note=note, recipient=participant.email
    )
    key, unsubscribe_token = sent.reply_key, sent.unsubscribe_token
    incoming = settings.SERVICEDESK_MAILBOXES.get("incoming_email")
    unsubscribe_url = settings.SITE_URL + _unsubscribe_path().replace("TOKEN", unsubscribe_token)
    # Rendered once per batch, project, email kind and note text (see _render): recipients
    # differ only in their unsubscribe token, issues (mostly) only in their number.
    rendered = _render(kind, issue, setting, note_text, author_name, bodies)
    # The body carries the unsubscribe token only, never the reply key: a customer who quotes
    # or forwards the email hands on nothing that posts to the ticket.
    text, body_html = rendered.for_issue(issue, unsubscribe_token)
    root = root or issue_message_id(issue)  # a new issue: nothing was moved into it
    reply_id = f"<reply-{key}@{_host()}>"
    message_id = root if kind == Kind.THANK_YOU else reply_id
    headers = {
        **_thread_headers(message_id, root, reply_id, customer_message_id),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Auto-Submitted": "auto-replied" if kind == Kind.THANK_YOU else "auto-generated",
        "X-Auto-Response-Suppress": "All",
    }
    unsubscribe = [f"<{unsubscribe_url}>"]
    custom = custom_sender(setting)
    if incoming is not None and incoming.enabled:
        headers["Reply-To"] = incoming.address_for(key)
        unsubscribe.append(f"<mailto:{incoming.address_for(f'{unsubscribe_token}-unsubscribe')}>")
    if custom is not None:
        # The provider forwards support+<key>@customer.example to the project's address: the
        # key routes the reply (mailroom.handlers), as it does in our own Reply-To.
        headers["Reply-To"] = custom.address_with(key)
    headers["List-Unsubscribe"] = ", ".join(unsubscribe)
    email = OutboundEmail(
        kind=kind,
        project_id=issue.project_id,
        issue=issue,
        note=note,
        participant=participant,
        sent_notification=sent,
        recipient=participant.email,
        # formataddr quotes and escapes the name, or encodes it (RFC 2047) if it is not ASCII.
        from_email=formataddr(
            (_one_line(sender_name or setting.display_name), sender_address(setting))
        ),
        subject=_one_line(f"Re: {issue.title} (#{issue.iid})"),
        message_id=message_id,
        headers=headers,
        body_text=text,
        body_html=body_html,
        attachments=list(attachments),
    )
    record = IssueEmail(issue=issue, message_id=message_id, direction=IssueEmail.Direction.OUTBOUND)
    return _Draft(sent, email, record)


def _thread_headers(
    message_id: str, root: str, reply_id: str, customer_message_id: str | None
) -> dict[str, str]:
    """In-Reply-To and References. The thank-you answers the customer's own email, so their
    client shows it under what they sent; later emails answer the thank-you (the root). Replies
    keep the thread and carry the reply key even when a client drops Reply-To."""
    references = [customer_message_id] if customer_message_id else []
    references.append(root)
    if message_id != root:
        references.append(reply_id)
    headers = {"References": " ".join(references)}
    parent = customer_message_id if message_id == root else root
    if parent:
        headers["In-Reply-To"] = parent
    return headers


def _save(drafts: Sequence[_Draft]) -> list[OutboundEmail]:
    if not drafts:
        return []
    SentNotification.objects.bulk_create([d.sent for d in drafts])
    for d in drafts:
        d.email.sent_notification = d.sent  # now with its primary key
    OutboundEmail.objects.bulk_create([d.email for d in drafts])
    IssueEmail.objects.bulk_create([d.record for d in drafts if d.record is not None])
    return [d.email for d in drafts]


SEND_BATCH = 50  # emails per sending task


_local = threading.local()


@contextmanager
def sent_by_this_worker() -> Iterator[None]:
    """Emails recorded inside are sent by this process as soon as their transaction commits,
    rather than queued for a sending task. The mailroom records its thank-yous so: queued,
    they would wait behind every inbound email queued before them (workers take inbound work
    first), seconds in a burst; sent here they leave within the batch's own time."""
    previous = getattr(_local, "send_here", False)
    _local.send_here = True
    try:
        yield
    finally:
        _local.send_here = previous


def send_after_commit(emails: Sequence[OutboundEmail]) -> None:
    """Queue the emails for sending once the transaction that recorded them commits (or send
    them then, inside ``sent_by_this_worker``)."""
    ids = [email.pk for email in emails]
    if not ids:
        return

    def queue() -> None:
        for start in range(0, len(ids), SEND_BATCH):
            enqueue("issues.tasks.send_outbound_emails", ids[start : start + SEND_BATCH])

    if getattr(_local, "send_here", False):
        transaction.on_commit(lambda: _send_here(ids))
    else:
        transaction.on_commit(queue)


def _send_here(ids: list[int]) -> None:
    """Send committed emails as a sending task would. Whatever goes wrong leaves them pending
    (or sending) in the outbox, where the outbox sweeper finds them: it must not undo the
    committed work whose commit hook this is."""
    from .outbox import outbound_claim, outbound_send  # the outbox records notes: it imports us

    try:
        for start in range(0, len(ids), SEND_BATCH):
            claimed, token = outbound_claim(ids[start : start + SEND_BATCH])
            if claimed:
                outbound_send(claimed, token)
    except Exception:
        log.exception("sending %d emails after their commit failed; the sweeper retries", len(ids))


@dataclass(frozen=True)
class NewTicket:
    """An issue that came by email, with who is to hear about it."""

    issue: Issue
    requester: EmailParticipant | None
    cc: Sequence[EmailParticipant] = ()
    message_id: str = ""  # of the email it came from, as the sender wrote it (unchecked)


def service_desk_issues_created(tickets: Sequence[NewTicket]) -> list[OutboundEmail]:
    """Called in the transaction that created the issues: *thank you* to each requester, *new
    participant* to each Cc'd address. Nothing for projects whose Service Desk is off. Three
    INSERTs and sending queued in tasks of SEND_BATCH emails, whatever the number of issues."""
    settings_by_project = _enabled_settings({t.issue.project_id for t in tickets})
    drafts = []
    bodies: Bodies = {}
    for ticket in tickets:
        setting = settings_by_project.get(ticket.issue.project_id)
        if setting is None:
            continue
        # The Cc'd people got the customer's email too: their new-participant email refers to it.
        original = safe_message_id(ticket.message_id)
        if ticket.requester is not None and ticket.requester.is_reachable:
            drafts.append(_draft(kind=Kind.THANK_YOU, issue=ticket.issue,
                                 participant=ticket.requester, setting=setting,
                                 customer_message_id=original, bodies=bodies))  # fmt: skip
        drafts += [
            _draft(kind=Kind.NEW_PARTICIPANT, issue=ticket.issue, participant=p, setting=setting,
                   customer_message_id=original, bodies=bodies)
            for p in ticket.cc
            if p.is_reachable
        ]  # fmt: skip
    emails = _save(drafts)
    send_after_commit(emails)
    return emails


def notes_added(notes: Sequence[Note]) -> list[OutboundEmail]:
    """*New note* to every reachable participant of each note's issue, except the note's own
    email author. Only public, non-system notes; nothing for projects whose Service Desk is
    off. Called in the transaction that created the notes; a fixed number of queries for any
    number of notes (plus one per note that links files)."""
    public = [note for note in notes if not note.internal and not note.system]
    if not public:
        return []
    issues = {note.issue_id: note.issue for note in public}
    settings_by_project = _enabled_settings({issue.project_id for issue in issues.values()})
    issues = {pk: i for pk, i in issues.items() if i.project_id in settings_by_project}
    reachable = _reachable(list(issues))
    roots = _thread_roots(list(issues.values()))
    files = _attachments([note for note in public if note.issue_id in issues])
    drafts = []
    bodies: Bodies = {}
    for note in public:
        if note.issue_id not in issues:
            continue
        issue, author = issues[note.issue_id], note.external_author.lower()
        participants = reachable.get(issue.pk, [])
        recipients = [p for p in participants if p.email.lower() != author]
        if not recipients:
            continue
        setting = settings_by_project[issue.project_id]
        text = email_links(note.body, issue)
        if note.external_author:
            # A participant's email reply, passed on to the others: say whose words they are.
            name = _participant_name(note, issue, participants)
            author_name = name or ANONYMOUS_PARTICIPANT
            text = f"{_markdown_literal(author_name)} wrote:\n\n{text}"
            sender = f"{name} via {setting.display_name}" if name else setting.display_name
        else:
            agent = "" if note.author.is_bot else note.author.display_name
            sender, author_name = agent_signature(setting, agent)
        drafts += [
            _draft(kind=Kind.NEW_NOTE, issue=issue, participant=p, setting=setting, note=note,
                   note_text=text, attachments=files.get(note.pk, []), bodies=bodies,
                   root=roots[issue.pk], sender_name=sender, author_name=author_name)
            for p in recipients
        ]  # fmt: skip
    emails = _save(drafts)
    send_after_commit(emails)
    return emails


# Who wrote an email reply, for participants whose name we do not know. Never their address:
# participants' addresses are for Reporters and up only (SPEC §8), and a person added to the
# ticket by the team has not seen the others' addresses in any Cc.
ANONYMOUS_PARTICIPANT = "Another participant"
# A person's name in our From and in the text: stored names may be 200 characters or more.
MAX_NAME_LENGTH = 100


def agent_signature(setting: ServiceDeskSetting, agent_name: str) -> tuple[str, str]:
    """The sender's display name and %{AUTHOR_NAME} of a team member's comment: "Bob at ACME
    Support" and "Bob" when the project signs replies with the agent's name, else the desk's
    name for both."""
    desk = setting.display_name
    agent = _one_line(agent_name)[:MAX_NAME_LENGTH].strip()
    if setting.sign_replies_with_agent_name and agent:
        return f"{agent} at {desk}", agent
    return desk, desk


def _participant_name(note: Note, issue: Issue, participants: Sequence[EmailParticipant]) -> str:
    """The display name the sender of an email note writes with: the note's own, else the one
    they were known by on the ticket; "" if none. A "name" that is an address (many clients
    put the address there) is none: it would show the address to the other participants."""
    address = note.external_author.lower()
    known = [p.name for p in participants if p.email.lower() == address]
    if address == issue.external_author.lower():
        known.append(issue.external_author_name)
    for name in (note.external_name, *known):
        name = _one_line(name)[:MAX_NAME_LENGTH].strip()
        if name and "@" not in name:
            return name
    return ""


# Python-Markdown's backslash escapes; "<" and "&" become entities (a name is text, not HTML).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!>])")


def _markdown_literal(text: str) -> str:
    """Text that Markdown renders as written."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def note_added(note: Note) -> list[OutboundEmail]:
    return notes_added([note])


def issue_closed(issue: Issue) -> list[OutboundEmail]:
    """*Issue closed* to every reachable participant, if the project turned it on (it is off by
    default). Called in the transaction that closed the issue."""
    setting = _enabled_settings({issue.project_id}).get(issue.project_id)
    if setting is None or not (setting.send_issue_closed_email or setting.satisfaction_survey):
        return []
    bodies: Bodies = {}
    root = _thread_roots([issue])[issue.pk]
    drafts = [
        _draft(kind=Kind.ISSUE_CLOSED, issue=issue, participant=p, setting=setting,
               bodies=bodies, root=root)
        for p in _reachable([issue.pk]).get(issue.pk, [])
    ]  # fmt: skip
    if setting.satisfaction_survey:
        _with_survey(issue, setting, drafts)
    emails = _save(drafts)
    send_after_commit(emails)
    return emails


def _with_survey(issue: Issue, setting: ServiceDeskSetting, drafts: list[_Draft]) -> None:
    """The satisfaction question under the closing email's text, for people who read mail (a
    no-reply address gets the email without it)."""
    from satisfaction.services import survey_markdown, survey_wanted

    with translation.override(setting.language or settings.LANGUAGE_CODE):
        html = render_markdown(survey_markdown(issue), remote_images=False)
    text = html_to_plain_text(html)
    for draft in drafts:
        email = draft.email
        if email.participant is not None and survey_wanted(email.participant):
            email.body_html = f"{email.body_html}\n{html}"
            email.body_text = f"{email.body_text.rstrip()}\n\n{text}\n"


def issue_merged(
    source: Issue, target: Issue, participants: Sequence[EmailParticipant]
) -> list[OutboundEmail]:
    """*Ticket merged* to the merged ticket's reachable participants (now the target's), in the
    thread they know, with the target's reply keys: their answers land on the target."""
    setting = _enabled_settings({target.project_id}).get(target.project_id)
    if setting is None or not setting.send_merged_email:
        return []
    bodies: dict[tuple[object, ...], _Rendered] = {}
    root = _thread_roots([source])[source.pk]
    reachable = {p.pk for p in _reachable([target.pk]).get(target.pk, [])}
    emails = _save(
        [
            _draft(kind=Kind.MERGED, issue=target, participant=p, setting=setting,
                   bodies=bodies, root=root)
            for p in participants
            if p.pk in reachable
        ]
    )  # fmt: skip
    send_after_commit(emails)
    return emails


def _enabled_settings(project_ids: set[int]) -> dict[int, ServiceDeskSetting]:
    return {
        setting.project_id: setting
        for setting in ServiceDeskSetting.objects.select_related("project__custom_email").filter(
            project_id__in=project_ids, service_desk_enabled=True
        )
    }


def custom_sender(setting: ServiceDeskSetting) -> CustomEmail | None:
    """The project's own address when it is verified and turned on (read with the setting:
    ``select_related("project__custom_email")`` makes this free)."""
    try:
        custom = setting.project.custom_email
    except CustomEmail.DoesNotExist:
        return None
    return custom if custom.enabled else None


def sender_address(setting: ServiceDeskSetting) -> str:
    custom = custom_sender(setting)
    return custom.address if custom is not None else settings.DEFAULT_FROM_EMAIL


def _reachable(issue_ids: list[int]) -> dict[int, list[EmailParticipant]]:
    found: dict[int, list[EmailParticipant]] = {}
    for participant in EmailParticipant.objects.filter(
        issue_id__in=issue_ids, unsubscribed_at=None, bouncing_at=None
    ):
        found.setdefault(participant.issue_id, []).append(participant)
    return found


# What a sender is told, by the start of the reason the mailroom recorded. Unknown and
# disabled addresses read the same: a notice never confirms that a project exists.
_REJECTION_WORDING = [
    ("too large", gettext_lazy("it is larger than we accept")),
    ("no key found", gettext_lazy("the address it was sent to does not belong to a support desk")),
    ("project not found",
     gettext_lazy("the address it was sent to does not belong to a support desk")),
    ("reply key not found",
     gettext_lazy("the ticket it answers is unknown, or the address was changed")),
    ("empty", gettext_lazy("it had no text")),
    ("rate limited", gettext_lazy("too many emails came from your address in a short time; "
                                  "please try again in a few minutes")),
]  # fmt: skip
REJECTION_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class Rejection:
    """A rejected email whose sender should hear about it."""

    recipient: str
    subject: str
    reason: str
    message_id: str = ""
    project: Project | None = None


def rejection_wording(reason: str) -> str:
    for start, wording in _REJECTION_WORDING:
        if reason.startswith(start):
            return str(wording)
    return gettext("it could not be processed")


def rejection_notices(rejections: Sequence[Rejection]) -> list[OutboundEmail]:
    """The "[Rejected] <subject>" notices, at most one per sender per hour (counting notices
    already recorded), written in the transaction that records the rejections.

    The mailroom decides who may get one (never auto-generated mail, never our own addresses).
    """
    # Keyed by mailbox: jake+1@x and Jake+2@X get one notice between them.
    wanted: dict[str, tuple[str, Rejection]] = {}
    for rejection in rejections:
        address = rejection.recipient.strip().lower()
        if address and "@" in address:
            wanted.setdefault(normalise_mailbox(address), (address, rejection))
    if not wanted:
        return []
    domains = Q()
    for mailbox in wanted:
        domains |= Q(recipient__iendswith="@" + mailbox.rpartition("@")[2])
    recent = {
        normalise_mailbox(recipient)
        for recipient in OutboundEmail.objects.filter(
            domains, kind=Kind.REJECTED, created_at__gte=timezone.now() - REJECTION_INTERVAL
        ).values_list("recipient", flat=True)
    }
    emails = []
    for mailbox, (address, rejection) in wanted.items():
        if mailbox in recent:
            continue
        # In the project's language when the address named one; else the instance's.
        language = _language_of(rejection.project)
        with translation.override(language):
            template = email_template_default("rejected", language)
            subject = gettext("[Rejected] %(subject)s") % {
                "subject": _one_line(rejection.subject) or gettext("(no subject)")
            }
            reason = rejection_wording(rejection.reason)
        body_html = render_markdown(render_placeholders(template, {
            "REASON": reason,
            "SYSTEM_HEADER": settings.SERVICEDESK_EMAIL_HEADER,
            "SYSTEM_FOOTER": settings.SERVICEDESK_EMAIL_FOOTER,
        }), remote_images=False)  # fmt: skip
        headers = {"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"}
        name, sender = _sender(rejection.project)
        name = _one_line(name)
        original = safe_message_id(rejection.message_id)
        if original is not None:
            headers["In-Reply-To"] = headers["References"] = original
        emails.append(
            OutboundEmail(
                kind=Kind.REJECTED,
                project=rejection.project,
                recipient=address,
                from_email=formataddr((name, sender)),
                subject=subject[:998],
                message_id=f"<rejected-{secrets.token_hex(16)}@{_host()}>",
                headers=headers,
                body_text=html_to_plain_text(body_html),
                body_html=body_html,
            )
        )
    OutboundEmail.objects.bulk_create(emails)
    send_after_commit(emails)
    return emails


def account_email_record(*, recipient: str, subject: str, template: str,
                         values: dict[str, str], language: str = "") -> OutboundEmail:  # fmt: skip
    """An email about someone's account (an invitation, a password reset link, an address to
    confirm), recorded in the caller's transaction and sent by the worker after commit, like
    every other email. ``template`` is a Markdown file under templates/emails/ (or its
    translation under templates/emails/<language>/) with %{PLACEHOLDERS}."""
    text = email_template_default(template, language)  # in the language when translated
    body_html = render_markdown(render_placeholders(text, values).strip(), remote_images=False)
    email = OutboundEmail.objects.create(
        kind=Kind.ACCOUNT,
        recipient=recipient,
        from_email=formataddr(("Service Desk", settings.DEFAULT_FROM_EMAIL)),
        subject=_one_line(subject),
        message_id=f"<account-{secrets.token_hex(16)}@{_host()}>",
        headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
        body_text=html_to_plain_text(body_html),
        body_html=body_html,
    )
    send_after_commit([email])
    return email


def _language_of(project: Project | None) -> str:
    if project is not None:
        setting = ServiceDeskSetting.objects.filter(project=project).first()
        if setting is not None:
            return setting.language
    return settings.LANGUAGE_CODE


def _sender(project: Project | None) -> tuple[str, str]:
    """Display name and address of a notice about mail to ``project``."""
    if project is not None:
        setting = (
            ServiceDeskSetting.objects.select_related("project__custom_email")
            .filter(project=project)
            .first()
        )
        if setting is not None and setting.service_desk_enabled:
            return setting.display_name, sender_address(setting)
    return ServiceDeskSetting.DEFAULT_OUTGOING_NAME, settings.DEFAULT_FROM_EMAIL


def team_emails_record(
    *, project: Project, recipients: Sequence[tuple[int, str]], subject: str, text: str
) -> list[OutboundEmail]:
    """Emails to members of the project's team about the project itself (not an issue), from
    the instance's address, recorded in the caller's transaction and sent after it.
    ``recipients`` are (user id, address); ``text`` is Markdown."""
    body_html = render_markdown(text, remote_images=False)
    emails = [
        OutboundEmail(
            kind=Kind.TEAM,
            project=project,
            user_id=user_id,
            recipient=address,
            from_email=f"Service Desk <{settings.DEFAULT_FROM_EMAIL}>",
            subject=_one_line(subject)[:998],
            message_id=f"<project-{secrets.token_hex(16)}@{_host()}>",
            headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
            body_text=html_to_plain_text(body_html),
            body_html=body_html,
        )
        for user_id, address in recipients
        if address
    ]
    OutboundEmail.objects.bulk_create(emails)
    send_after_commit(emails)
    return emails


def email_preview(
    *, project: Project, kind: str, text: str, agent_name: str = ""
) -> tuple[str, str]:
    """One Service Desk email worded with ``text`` (blank: the default), as a customer would
    get it — for the settings page's live preview. Rendered by the same code as real emails,
    from a sample issue that is never saved, its sample comment by ``agent_name``; nothing is
    written. Returns (subject, HTML)."""
    if kind not in (
        Kind.THANK_YOU,
        Kind.NEW_NOTE,
        Kind.NEW_PARTICIPANT,
        Kind.ISSUE_CLOSED,
        Kind.MERGED,
    ):
        raise ValueError(f"No preview for {kind!r} emails.")
    text = text.replace("\r\n", "\n").strip()
    # project_id, not project: assigning the one-to-one would replace project.service_desk.
    setting = ServiceDeskSetting(project_id=project.pk, **{f"{kind}_template": text})
    issue = Issue(
        project=project,
        iid=42,
        title="The app crashes when I open my inventory",
        description=(
            "Hello,\n\nsince yesterday's update the app closes as soon as I open my "
            "inventory.\n\n- Windows 11\n- version 2.3.1\n\nThanks, Jake"
        ),
        external_author="jake@customer.example",
    )
    note_text = "Thanks Jake! We found the cause; the fix ships with **version 2.3.2**."
    template, restore = _tokens_for_unknown(_template_text(setting, kind))
    setattr(setting, f"{kind}_template", template)
    if kind == Kind.NEW_NOTE:
        author = agent_signature(project.service_desk, agent_name or "Sam")[1]
        rendered = _render(kind, issue, setting, note_text, author)
    else:
        rendered = _render(kind, issue, setting, "")
    body_html = rendered.for_issue(issue, rendered.placeholder_key)[1]
    return _one_line(f"Re: {issue.title} (#{issue.iid})"), restore(body_html)


# A tag of bleach's output (attribute values quoted, and may hold ">").
_HTML_TAG = re.compile(r"""<[a-zA-Z/!](?:[^"'<>]|"[^"]*"|'[^']*')*>""")


def _tokens_for_unknown(template: str) -> tuple[str, Callable[[str], str]]:
    """For the preview: the template with each placeholder we do not know swapped for a token
    that Markdown and bleach leave alone, and what puts them back into the rendered HTML — as
    written and highlighted (<mark>) in the text, as written in an attribute (a link's URL)."""
    nonce = secrets.token_hex(8)
    tokens: dict[str, str] = {}  # as written -> token
    unknown = set(unknown_placeholders(template))

    def swap(match: re.Match[str]) -> str:
        written = match.group(0)
        if written not in unknown:
            return written
        return tokens.setdefault(written, f"unknown{nonce}x{len(tokens)}x")

    template = PLACEHOLDER.sub(swap, template)
    if not tokens:
        return template, lambda rendered: rendered
    written_by_token = {token: html.escape(written) for written, token in tokens.items()}
    token_pattern = re.compile(f"unknown{nonce}x[0-9]+x")

    def in_text(chunk: str) -> str:
        return token_pattern.sub(lambda m: f"<mark>{written_by_token[m.group(0)]}</mark>", chunk)

    def restore(rendered: str) -> str:
        out, position = [], 0
        for tag in _HTML_TAG.finditer(rendered):
            out.append(in_text(rendered[position : tag.start()]))
            out.append(token_pattern.sub(lambda m: written_by_token[m.group(0)], tag.group(0)))
            position = tag.end()
        out.append(in_text(rendered[position:]))
        return "".join(out)

    return template, restore
