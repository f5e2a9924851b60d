"""Outbound Service Desk emails: rendered and recorded in the transaction that causes them.

``service_desk_issue_created`` is called by the mailroom in the transaction that created an
issue from email: the requester gets *thank you*, Cc'd participants *new participant*. Each
email gets its own reply key (a SentNotification) so replies and unsubscribes route back. The
rows are sent after commit by ``issues.tasks.send_outbound_emails``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formataddr
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.template.loader import get_template
from django.urls import reverse

from projects.models import ServiceDeskSetting

from .markdown import render_markdown
from .models import EmailParticipant, Issue, IssueEmail, Note, OutboundEmail, SentNotification

Kind = OutboundEmail.Kind
_PLACEHOLDER = re.compile(r"%\{\s*([A-Z_]+)\s*\}")
# A header value must be one line: names and subjects come from users and customers.
_LINE_BREAKS = re.compile(r"[\r\n\x00]+")


def render_placeholders(template: str, values: dict[str, str]) -> str:
    """Replace ``%{NAME}`` / ``%{ NAME }``; unknown placeholders are left as they are."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _host() -> str:
    return urlsplit(settings.SITE_URL).hostname or "localhost"


def issue_message_id(issue: Issue) -> str:
    """The thread's root: the thank-you's Message-ID; later emails refer to it (SPEC §7)."""
    return f"<issue_{issue.pk}@{_host()}>"


def _template_text(setting: ServiceDeskSetting, kind: str) -> str:
    """The project's own template, else the instance default file."""
    custom = getattr(setting, f"{kind}_template", "")
    # The raw file (our placeholders, not Django template syntax) from the template dirs.
    return custom or get_template(f"emails/{kind}.md").template.source  # type: ignore[attr-defined]


def _one_line(text: str) -> str:
    return " ".join(_LINE_BREAKS.sub(" ", text).split())


@dataclass
class _Draft:
    """An email and the rows that go with it, built before being saved (so batches can save
    many drafts with three INSERTs)."""

    sent: SentNotification
    email: OutboundEmail
    record: IssueEmail


@lru_cache(maxsize=1)
def _unsubscribe_path() -> str:
    return reverse("unsubscribe", args=["REPLYKEY"])


def _draft(
    *,
    kind: str,
    issue: Issue,
    participant: EmailParticipant,
    setting: ServiceDeskSetting,
    note: Note | None = None,
) -> _Draft:
    sent = SentNotification(
        issue=issue, participant=participant, note=note, recipient=participant.email
    )
    key = sent.reply_key
    incoming = settings.SERVICEDESK_MAILBOXES.get("incoming_email")
    unsubscribe_url = settings.SITE_URL + _unsubscribe_path().replace("REPLYKEY", key)
    issue_url = settings.SITE_URL + reverse(
        "issue_detail", args=[issue.project.full_path, issue.iid]
    )
    values = {
        "ISSUE_ID": f"#{issue.iid}",
        "ISSUE_PATH": f"{issue.project.full_path}#{issue.iid}",
        "ISSUE_URL": issue_url,
        "ISSUE_DESCRIPTION": issue.description,
        "NOTE_TEXT": note.body if note is not None else "",
        "UNSUBSCRIBE_URL": unsubscribe_url,
        "SYSTEM_HEADER": settings.SERVICEDESK_EMAIL_HEADER,
        "SYSTEM_FOOTER": settings.SERVICEDESK_EMAIL_FOOTER,
        "ADDITIONAL_TEXT": settings.SERVICEDESK_EMAIL_ADDITIONAL_TEXT,
    }
    text = render_placeholders(_template_text(setting, kind), values).strip() + "\n"
    root = issue_message_id(issue)
    reply_id = f"<reply-{key}@{_host()}>"
    message_id = root if kind == Kind.THANK_YOU else reply_id
    headers = {
        # Replies keep the thread (In-Reply-To/References) and carry the reply key even when a
        # client drops Reply-To.
        "References": root if message_id == root else f"{root} {reply_id}",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Auto-Submitted": "auto-replied" if kind == Kind.THANK_YOU else "auto-generated",
        "X-Auto-Response-Suppress": "All",
    }
    if message_id != root:
        headers["In-Reply-To"] = root
    unsubscribe = [f"<{unsubscribe_url}>"]
    if incoming is not None and incoming.enabled:
        headers["Reply-To"] = incoming.address_for(key)
        unsubscribe.append(f"<mailto:{incoming.address_for(f'{key}-unsubscribe')}>")
    headers["List-Unsubscribe"] = ", ".join(unsubscribe)
    email = OutboundEmail(
        kind=kind,
        issue=issue,
        note=note,
        participant=participant,
        sent_notification=sent,
        recipient=participant.email,
        from_email=formataddr((_one_line(setting.display_name), settings.DEFAULT_FROM_EMAIL)),
        subject=_one_line(f"Re: {issue.title} (#{issue.iid})"),
        message_id=message_id,
        headers=headers,
        body_text=text,
        body_html=render_markdown(text),
    )
    record = IssueEmail(issue=issue, message_id=message_id, direction=IssueEmail.Direction.OUTBOUND)
    return _Draft(sent, email, record)


def _save(drafts: Sequence[_Draft]) -> list[OutboundEmail]:
    if not drafts:
        return []
    SentNotification.objects.bulk_create([d.sent for d in drafts])
    for d in drafts:
        d.email.sent_notification = d.sent  # now with its primary key
    OutboundEmail.objects.bulk_create([d.email for d in drafts])
    IssueEmail.objects.bulk_create([d.record for d in drafts])
    return [d.email for d in drafts]


SEND_BATCH = 50  # emails per sending task


def send_after_commit(emails: Sequence[OutboundEmail]) -> None:
    """Queue the emails for sending once the transaction that recorded them commits."""
    ids = [email.pk for email in emails]
    if not ids:
        return

    def enqueue() -> None:
        from .tasks import send_outbound_emails

        for start in range(0, len(ids), SEND_BATCH):
            send_outbound_emails.delay(ids[start : start + SEND_BATCH])

    transaction.on_commit(enqueue)


def service_desk_issue_created(
    *,
    issue: Issue,
    requester: EmailParticipant | None,
    cc: Sequence[EmailParticipant],
    send: bool = True,
) -> list[OutboundEmail]:
    """Called in the issue's creating transaction: *thank you* to the requester, *new
    participant* to each Cc'd address. Nothing when the project's Service Desk is off."""
    emails = _save(_issue_drafts(issue, requester, cc))
    if send:
        send_after_commit(emails)
    return emails


def service_desk_issues_created(
    items: Sequence[tuple[Issue, EmailParticipant | None]],
) -> list[OutboundEmail]:
    """The same for a batch of issues created together: three INSERTs and sending queued in
    tasks of SEND_BATCH emails, whatever the number of issues."""
    drafts = [draft for issue, requester in items for draft in _issue_drafts(issue, requester, [])]
    emails = _save(drafts)
    send_after_commit(emails)
    return emails


def _issue_drafts(
    issue: Issue, requester: EmailParticipant | None, cc: Sequence[EmailParticipant]
) -> list[_Draft]:
    setting: ServiceDeskSetting | None
    if "service_desk" in issue.project._state.fields_cache:
        setting = issue.project.service_desk  # already loaded: no query per issue in a batch
    else:
        setting = ServiceDeskSetting.objects.filter(project_id=issue.project_id).first()
    if setting is None or not setting.service_desk_enabled:
        return []
    drafts = []
    if requester is not None and requester.is_reachable:
        drafts.append(
            _draft(kind=Kind.THANK_YOU, issue=issue, participant=requester, setting=setting)
        )
    for participant in cc:
        if participant.is_reachable:
            drafts.append(
                _draft(kind=Kind.NEW_PARTICIPANT, issue=issue, participant=participant,
                       setting=setting)
            )  # fmt: skip
    return drafts


def note_added(note: Note, *, send: bool = True) -> list[OutboundEmail]:
    """*New note* to every reachable participant except the note's own email author.

    Only public, non-system notes; nothing when the project's Service Desk is off. Called in
    the transaction that created the note.
    """
    if note.internal or note.system:
        return []
    issue = note.issue
    setting = ServiceDeskSetting.objects.filter(project_id=issue.project_id).first()
    if setting is None or not setting.service_desk_enabled:
        return []
    author = note.external_author.lower()
    drafts = [
        _draft(kind=Kind.NEW_NOTE, issue=issue, participant=p, setting=setting, note=note)
        for p in issue.email_participants.filter(unsubscribed_at=None, bouncing_at=None)
        if p.email.lower() != author
    ]
    emails = _save(drafts)
    if send:
        send_after_commit(emails)
    return emails
