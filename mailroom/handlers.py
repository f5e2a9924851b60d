"""What an inbound email becomes: the rules, the routing decision, and each handler.

``handle(row)`` runs inside the ledger's transaction for the row; it returns the outcome to
record. The sender's faults come back as ``rejected``/``ignored`` results (never retried);
anything raised is our fault and is retried by the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.models import User
from accounts.selectors import support_bot
from issues.emails import (
    note_added,
    send_after_commit,
    service_desk_issue_created,
    service_desk_issues_created,
)
from issues.models import EmailParticipant, Issue, IssueEmail, Note, SentNotification, Upload
from issues.quick_actions import apply_quick_actions, neutralise
from issues.services import (
    issue_create,
    issue_email_record,
    issue_iids_allocate,
    issue_reopen,
    issue_title,
    note_create,
    participant_add,
    participant_unsubscribe,
    participants_mark_bouncing,
    upload_create,
    upload_markdown,
)
from projects.models import Project, ServiceDeskSetting
from servicedesk import ratelimit

from . import spam
from .models import InboundMessage
from .parsing import MalformedEmail, ParsedEmail, parse_email, rewrite_cid_references, split_reply
from .routing import custom_key_candidates, default_key_candidates, find_key, parse_key
from .rules import auto_generated_reason, delivery_report

log = logging.getLogger(__name__)
Outcome = InboundMessage.Outcome
MAX_MOVE_HOPS = 20


@dataclass
class Result:
    outcome: str
    reason: str = ""
    decision: dict[str, Any] = field(default_factory=dict)
    project: Project | None = None
    issue: Issue | None = None
    note: Note | None = None
    rejection_notice_due: bool = False
    issue_id: int | None = None  # when only the id is at hand (bulk notes)


def redact(key: str) -> str:
    """Reply keys are credentials: logs and traces keep only their first characters."""
    if len(key) >= 32 and all(c in "0123456789abcdef" for c in key[:32].lower()):
        return f"{key[:6]}…{key[32:]}"
    return key


def _mailboxes() -> list[Any]:
    return [m for m in settings.SERVICEDESK_MAILBOXES.values() if m.enabled]


def _our_address(address: str | None) -> bool:
    if not address:
        return False
    lowered = address.lower()
    if lowered == settings.DEFAULT_FROM_EMAIL.lower():
        return True
    return any(m.address_regex.match(lowered) for m in _mailboxes())


@dataclass
class ProjectMail:
    """An email that passed the rules and names a project with Service Desk on."""

    email: ParsedEmail
    project: Project
    setting: ServiceDeskSetting
    trace: dict[str, Any]


@dataclass
class BatchContext:
    """What a batch looked up once for all its messages."""

    outbound_ids: set[str] = field(default_factory=set)
    projects: dict[str, Project | None] = field(default_factory=dict)


def handle(row: InboundMessage, bot: User | None = None) -> Result:
    """Decide and carry out what one email becomes (inside the caller's transaction)."""
    bot = bot or support_bot()
    step = _screen(row, bot=bot)
    if isinstance(step, Result):
        return step
    threaded = _threaded_issue(step.project, step.email)
    if threaded is not None:
        rule = "thread (In-Reply-To/References)"
        return _note_from_email(threaded, step.email, {**step.trace, "rule": rule}, bot)
    return _new_issue(
        step.project, step.setting, step.email, step.trace, bot, spam_check=not row.spam_released
    )


def _parse(row: InboundMessage) -> ParsedEmail | Result:
    try:
        email = parse_email(bytes(row.raw))
    except MalformedEmail as exc:
        return Result(Outcome.REJECTED, f"malformed email: {exc}", {"rule": "malformed"})
    row.message_id = (email.message_id or "")[:998]
    row.from_address = (email.from_address or "")[:320]
    row.subject = email.subject[:998]
    return email


def _screen(
    row: InboundMessage,
    email: ParsedEmail | None = None,
    batch: BatchContext | None = None,
    *,
    bot: User,
) -> ProjectMail | Result:
    """The rules, then routing. A Result when the email's fate is settled (rejected, ignored,
    a reply or an unsubscribe carried out); otherwise the project it is for."""
    if email is None:
        parsed = _parse(row)
        if isinstance(parsed, Result):
            return parsed
        email = parsed
    trace: dict[str, Any] = {"size": row.size}
    if row.size > settings.SERVICEDESK_MAX_EMAIL_SIZE:
        limit = settings.SERVICEDESK_MAX_EMAIL_SIZE / 1024 / 1024
        return _reject(email, f"too large ({row.size / 1024 / 1024:.1f} MB > {limit:.0f} MB)",
                       {**trace, "rule": "too large"})  # fmt: skip

    report = (
        delivery_report(bytes(row.raw), mailboxes=_mailboxes())
        if _may_be_bounce(row, email)
        else None
    )
    if report is not None:
        return _delivery_report(report, trace, bot)
    reason = auto_generated_reason(email.headers, content_type=email.content_type)
    if reason:
        return Result(Outcome.IGNORED, f"auto-generated: {reason}", {**trace, "rule": reason})
    loop = _loop_reason(email, batch)
    if loop:
        return Result(Outcome.IGNORED, f"loop: {loop}", {**trace, "rule": "loop"})

    match = find_key(email.headers, _mailboxes())
    if match is None:
        return _reject(email, "no key found", {**trace, "rule": "no key"})
    trace.update(header=match.header, mailbox=match.mailbox, key=redact(match.key))
    key = parse_key(match.key, match.mailbox)
    if key is None:
        return _reject(email, "project not found", {**trace, "rule": "unrecognised key"})
    trace["key_kind"] = key.kind
    if key.kind in ("reply", "unsubscribe"):
        if batch is not None:
            raise NeedsOwnTransaction
        sent = (
            SentNotification.objects.select_related("issue", "participant")
            .filter(reply_key=key.reply_key)
            .first()
        )
        if sent is None:
            return _reject(email, "reply key not found", {**trace, "rule": "unknown reply key"})
        if key.kind == "unsubscribe":
            return _unsubscribe(sent, trace, bot)
        issue = _follow_moves(sent.issue)
        return _note_from_email(issue, email, {**trace, "rule": "reply key"}, bot)

    raw_key = match.key.lower()
    if batch is not None and raw_key in batch.projects:
        project = batch.projects[raw_key]
    else:
        project = _project_for(key, raw_key)
        if batch is not None:
            batch.projects[raw_key] = project
    if project is None:
        return _reject(email, "project not found", {**trace, "rule": "no such project"})
    setting = project.service_desk
    if not setting.service_desk_enabled:
        return _reject(
            email, "project not found", {**trace, "rule": "service desk off"}, project=project
        )
    return ProjectMail(email, project, setting, trace)


def _may_be_bounce(row: InboundMessage, email: ParsedEmail) -> bool:
    """Cheap test before reading a bounce: a report, a daemon sender, or failed recipients.

    Mirrors what rules.delivery_report accepts, from the headers alone: a DSN is a
    multipart/report (RFC 3464 §2), not any mail that mentions "delivery-status".
    """
    senders = f"{email.header('From') or ''} {email.header('Sender') or ''}".lower()
    return (
        email.content_type == "multipart/report"
        or "mailer-daemon" in senders
        or "postmaster" in senders
        or email.header("X-Failed-Recipients") is not None
    )


class NeedsOwnTransaction(Exception):
    """Raised in batch mode for an email the bulk path does not handle: it is handled alone."""


def _reject(
    email: ParsedEmail, reason: str, decision: dict[str, Any], project: Project | None = None
) -> Result:
    # The sender gets one short "[Rejected]" notice (at most one per hour, sent by the outbound
    # code), unless there is nobody to answer.
    return Result(
        Outcome.REJECTED,
        reason,
        decision,
        project=project,
        rejection_notice_due=bool(email.from_address)
        and not _our_address(email.from_address)
        # Size is checked before the auto-generated rules: never answer a robot anyway.
        and not auto_generated_reason(email.headers, content_type=email.content_type),
    )


def _loop_reason(email: ParsedEmail, batch: BatchContext | None = None) -> str:
    if email.message_id:
        if batch is not None:
            ours = email.message_id in batch.outbound_ids
        else:
            ours = IssueEmail.objects.filter(
                message_id=email.message_id, direction=IssueEmail.Direction.OUTBOUND
            ).exists()
        if ours:
            return "the Message-ID is one we sent"
    for address in (email.from_address, email.sender):
        if _our_address(address):
            return f"sent from our own address {address}"
    # Gmail-style forwarding names the forwarding mailbox first in X-Forwarded-For. Mail *from*
    # that mailbox is the mailbox writing to itself — verification mails ("Verify custom email
    # address…") and forwarding loops — never a customer; it must not open an issue, and must
    # not get a thank-you that would hand a verification secret to whoever asked for it.
    for value in email.header_all("X-Forwarded-For"):
        forwarder = value.split()[0].strip("<>").lower() if value.split() else ""
        if forwarder and forwarder == (email.from_address or "").lower():
            return f"sent by the mailbox that forwards to us ({forwarder})"
    return ""


def _delivery_report(report: Any, trace: dict[str, Any], bot: User) -> Result:
    marked = 0
    if report.permanent and report.reply_keys:
        participants = EmailParticipant.objects.filter(
            sent_notifications__reply_key__in=report.reply_keys
        ).select_related("issue")
        marked = participants_mark_bouncing(participants=participants, actor=bot)
    return Result(
        Outcome.IGNORED,
        f"delivery report ({'permanent' if report.permanent else 'temporary'} failure); "
        f"{marked} participant(s) marked bouncing",
        {**trace, "rule": "delivery report", "reply_keys": [redact(k) for k in report.reply_keys]},
    )


def _unsubscribe(sent: SentNotification, trace: dict[str, Any], bot: User) -> Result:
    participant = sent.participant
    issue = _follow_moves(sent.issue)
    if participant is None:
        return Result(Outcome.IGNORED, "participant already removed", trace, issue=issue)
    participant_unsubscribe(participant=participant, actor=bot)
    return Result(
        Outcome.UNSUBSCRIBED,
        "",
        {**trace, "rule": "unsubscribe key"},
        project=issue.project,
        issue=issue,
    )


def _follow_moves(issue: Issue) -> Issue:
    seen = 0
    while issue.moved_to_id is not None and seen < MAX_MOVE_HOPS:
        issue = Issue.objects.select_related("project").get(pk=issue.moved_to_id)
        seen += 1
    return issue


def _project_for(key: Any, raw_key: str) -> Project | None:
    projects = Project.objects.select_related("service_desk")
    if key.kind == "default":
        # "<slug>-<id>-<token>-issue-" and "<slug>-<id>-issue-" can overlap (slugs hold digits):
        # try every reading; slug, id and token must all agree with one project.
        for reading in default_key_candidates(raw_key):
            project = projects.filter(pk=reading.project_id or 0).first()
            if (
                project is not None
                and project.full_path_slug == reading.project_slug
                and reading.token in _valid_tokens(project.service_desk)
            ):
                return project
        return None
    if key.kind == "legacy":
        # "incoming+group/project@" can be guessed from the path: once a project regenerated
        # its address (it wants the old one retired), the legacy form is retired as well.
        project = projects.filter(full_path__iexact=key.full_path).first()
        if project is not None and project.service_desk.address_token:
            return None
        return project
    if key.kind == "custom":
        # Slugs contain dashes: try every split; the slug tells projects with one suffix apart.
        for slug, suffix in custom_key_candidates(raw_key):
            for project in projects.filter(service_desk__project_key=suffix):
                if project.full_path_slug == slug:
                    return project
    return None


def _valid_tokens(setting: ServiceDeskSetting) -> set[str]:
    """The address token, and the one before "regenerate address" during its grace period."""
    tokens = {setting.address_token.lower()}
    expires = setting.previous_address_expires_at
    if expires is not None and expires > timezone.now():
        tokens.add(setting.previous_address_token.lower())
    return tokens


def _threaded_issue(project: Project, email: ParsedEmail) -> Issue | None:
    """A reply whose In-Reply-To/References names a Message-ID of one of the project's issues."""
    ids = [i for i in (*email.in_reply_to, *email.references) if i]
    if not ids:
        return None
    record = (
        IssueEmail.objects.filter(message_id__in=ids[:100], issue__project=project)
        .select_related("issue", "issue__project")
        .order_by("-created_at")
        .first()
    )
    # An issue moved to another project since keeps its thread: the note lands where it went.
    return _follow_moves(record.issue) if record is not None else None


def _duplicate(issue: Issue, email: ParsedEmail) -> bool:
    return (
        bool(email.message_id)
        and IssueEmail.objects.filter(issue=issue, message_id=email.message_id).exists()
    )


def _attachments_markdown(
    email: ParsedEmail, issue: Issue, body: str, bot: User, note: Note | None = None
) -> tuple[str, str]:
    """Store every attachment as an upload; return (body with cid: rewritten, links block)."""
    uploads = [
        upload_create(
            issue=issue,
            note=note,
            filename=attachment.filename,
            content=attachment.content,
            content_type=attachment.content_type,
            uploaded_by=bot,
        )
        for attachment in email.attachments
    ]
    return _link_uploads(body, list(zip(email.attachments, uploads, strict=True)))


def _link_uploads(body: str, stored: list[tuple[Any, Upload]]) -> tuple[str, str]:
    """Images referenced as ``cid:`` show inline where they were; the rest are listed below."""
    urls_by_cid: dict[str, str] = {}
    links: list[str] = []
    for attachment, upload in stored:
        markdown = upload_markdown(upload)
        if attachment.content_id and f"cid:{attachment.content_id}" in body:
            urls_by_cid[attachment.content_id] = markdown[markdown.index("](") + 2 : -1]
        else:
            links.append(markdown)
    if urls_by_cid:
        body = rewrite_cid_references(body, urls_by_cid)
    return body, "\n".join(f"- {link}" if not link.startswith("!") else link for link in links)


def _note_from_email(issue: Issue, email: ParsedEmail, trace: dict[str, Any], bot: User) -> Result:
    if _duplicate(issue, email):
        return Result(
            Outcome.IGNORED,
            "duplicate: this Message-ID is already on the issue",
            {**trace, "rule": "duplicate"},
            project=issue.project,
            issue=issue,
        )
    reply, quoted = split_reply(email.body_text)
    if not reply.strip() and not email.attachments:
        return _reject(email, "empty reply", {**trace, "rule": "empty"}, project=issue.project)
    author = email.from_address or email.reply_to or ""
    body = neutralise(reply.strip())
    links = ""
    if email.attachments:
        # Uploads are stored first and linked to the note once it exists.
        body, links = _attachments_markdown(email, issue, body, bot)
    parts = [body, links]
    if quoted.strip():
        parts.append(
            '<details markdown="1">\n<summary>Quoted text</summary>\n\n'
            f"{neutralise(quoted.strip())}\n\n</details>"
        )
    note = note_create(
        issue=issue, author=bot, body="\n\n".join(p for p in parts if p), external_author=author
    )
    if email.attachments:
        Upload.objects.filter(issue=issue, note__isnull=True, uploaded_by=bot).update(note=note)
    issue_email_record(issue=issue, message_id=email.message_id, direction="in")
    _reopen_if_wanted(issue, bot)
    note_added(note)  # the other participants (Cc'd people) get the customer's reply
    return Result(Outcome.NOTE_ADDED, "", trace, project=issue.project, issue=issue, note=note)


def _reopen_if_wanted(issue: Issue, bot: User) -> None:
    if issue.state != Issue.State.CLOSED:
        return
    setting = ServiceDeskSetting.objects.filter(project_id=issue.project_id).first()
    if not (setting and setting.reopen_issue_on_external_participant_note):
        return
    issue_reopen(issue=issue, user=bot)
    mentions = " ".join(f"@{u.username}" for u in issue.assignees.all()) or "the team"
    note_create(
        issue=issue,
        author=bot,
        body=f"Reopened because the customer replied. {mentions}, please take a look.",
        internal=True,
    )


def _rate_key(project: Project, sender: str) -> str:
    return f"new-issue:{project.pk}:{sender.lower()}"


def _rate_limited(project: Project, sender: str) -> bool:
    if not sender:
        return False
    limit = settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE
    return ratelimit.hit(_rate_key(project, sender), limit=limit, window=60)


def _new_issue(
    project: Project,
    setting: ServiceDeskSetting,
    email: ParsedEmail,
    trace: dict[str, Any],
    bot: User,
    *,
    spam_check: bool = True,
) -> Result:
    if (
        email.message_id
        and IssueEmail.objects.filter(issue__project=project, message_id=email.message_id).exists()
    ):
        return Result(
            Outcome.IGNORED,
            "duplicate: an issue already exists for this Message-ID",
            {**trace, "rule": "duplicate"},
            project=project,
        )
    if not email.subject.strip() and not email.body_text.strip() and not email.attachments:
        return _reject(email, "empty email", {**trace, "rule": "empty"}, project=project)
    requester = email.from_address or email.reply_to or email.sender or ""
    if _rate_limited(project, requester):
        return _reject(email, "rate limited", {**trace, "rule": "rate limit"}, project=project)
    if spam_check and spam.enabled():
        is_spam, verdict = spam.check(email)
        trace["akismet"] = verdict
        if is_spam:
            # Quarantined: no issue, no thank-you; a Reporter+ decides on the spam page.
            return Result(Outcome.SPAM, f"spam ({verdict})", {**trace, "rule": "akismet"},
                          project=project)  # fmt: skip

    notify_to = email.reply_to if email.reply_to and email.reply_to != requester else ""
    issue = issue_create(
        project=project,
        author=bot,
        title=email.subject or "(no subject)",
        description="",
        confidential=setting.tickets_confidential_by_default or project.is_public,
        external_author=requester,
        service_desk_reply_to=notify_to,
    )
    body, links = _attachments_markdown(email, issue, neutralise(email.body_text.strip()), bot)
    parts = [body, links]
    if setting.description_template is not None:
        actions = apply_quick_actions(
            issue=issue, text=setting.description_template.content, user=bot
        )
        parts.append(actions.text)
        trace["template_actions"] = actions.applied
    Issue.objects.filter(pk=issue.pk).update(description="\n\n".join(p for p in parts if p))
    issue.refresh_from_db()

    requester_participant = None
    if notify_to or requester:
        requester_participant, _ = participant_add(issue=issue, email=notify_to or requester)
    cc_participants = []
    if setting.add_external_participants_from_cc:
        cc_participants = _add_cc(issue, email, exclude={requester.lower(), notify_to.lower()})
    issue_email_record(issue=issue, message_id=email.message_id, direction="in")
    service_desk_issue_created(issue=issue, requester=requester_participant, cc=cc_participants)
    return Result(Outcome.ISSUE_CREATED, "", trace, project=project, issue=issue)


def _add_cc(issue: Issue, email: ParsedEmail, exclude: set[str]) -> list[EmailParticipant]:
    added = []
    room = settings.SERVICEDESK_MAX_PARTICIPANTS - issue.email_participants.count()
    for address in email.cc:
        if room <= 0:
            break
        if not address or address.lower() in exclude or _our_address(address):
            continue
        participant, created = participant_add(issue=issue, email=address)
        if created:
            added.append(participant)
            room -= 1
        exclude.add(address.lower())
    return added


# --- Batches -----------------------------------------------------------------------------------
#
# One task processes up to ledger.TASK_BATCH emails in one transaction. The common case — a new
# email that opens a plain issue — is written in bulk: a handful of queries for the whole batch
# instead of ~20 per email. Everything else (replies, unsubscribes, attachments, description
# templates, Cc participants, threading) goes through ``handle`` one email at a time.


def handle_batch(
    rows: list[InboundMessage], bot: User
) -> tuple[dict[int, Result], list[InboundMessage]]:
    """Settle what can be settled in bulk; return (results by row id, rows to handle alone)."""
    plan = _BatchPlan(bot)
    parsed = plan.parse(rows)
    plan.look_up_message_ids(parsed)
    for row, email in parsed:
        plan.classify(row, email)
    plan.apply_rate_limits()
    plan.write()
    return plan.results, plan.alone


Key = tuple[str, int]  # (Message-ID, project id)


class _BatchPlan:
    """The phases of a batch: parse, look up known Message-IDs once, sort each email into
    bulk issue / bulk note / alone / settled, rate-limit in one round trip, write in bulk."""

    def __init__(self, bot: User) -> None:
        self.bot = bot
        self.results: dict[int, Result] = {}
        self.alone: list[InboundMessage] = []
        self.issues: list[tuple[InboundMessage, ProjectMail]] = []
        self.replies: list[tuple[InboundMessage, ProjectMail, int]] = []
        self.pending: list[tuple[InboundMessage, ProjectMail, tuple[str, ...]]] = []
        self.context = BatchContext()
        self.known: set[Key] = set()  # Message-IDs already on an issue of the project
        self.open_thread: dict[Key, int] = {}  # ...of an open, never moved issue: its id
        self.new_here: set[Key] = set()  # Message-IDs of emails planned in this batch

    def parse(self, rows: list[InboundMessage]) -> list[tuple[InboundMessage, ParsedEmail]]:
        parsed = []
        for row in rows:
            email = _parse(row)
            if isinstance(email, Result):
                self.results[row.pk] = email
            else:
                parsed.append((row, email))
        return parsed

    def look_up_message_ids(self, parsed: list[tuple[InboundMessage, ParsedEmail]]) -> None:
        mentioned = {
            mid
            for _, email in parsed
            for mid in (email.message_id, *email.in_reply_to, *email.references)
            if mid
        }
        rows = IssueEmail.objects.filter(message_id__in=mentioned).order_by("-created_at")
        for message_id, direction, project_id, issue_id, moved_to, state in rows.values_list(
            "message_id", "direction", "issue__project_id", "issue_id", "issue__moved_to_id",
            "issue__state",
        ):  # fmt: skip
            if direction == IssueEmail.Direction.OUTBOUND:
                self.context.outbound_ids.add(message_id)
            self.known.add((message_id, project_id))
            if moved_to is None and state == Issue.State.OPENED:
                self.open_thread.setdefault((message_id, project_id), issue_id)

    def classify(self, row: InboundMessage, email: ParsedEmail) -> None:
        try:
            step = _screen(row, email, self.context, bot=self.bot)
        except NeedsOwnTransaction:
            self.alone.append(row)
            return
        if isinstance(step, Result):
            self.results[row.pk] = step
            return
        pid = step.project.pk
        own: Key = (email.message_id or "", pid)
        seen = bool(email.message_id) and (own in self.known or own in self.new_here)
        references = (*email.in_reply_to, *email.references)
        if any((m, pid) in self.known or (m, pid) in self.new_here for m in references):
            self._classify_reply(row, step, references, duplicate=seen)
        elif seen:
            self.results[row.pk] = Result(
                Outcome.IGNORED,
                "duplicate: an issue already exists for this Message-ID",
                {**step.trace, "rule": "duplicate"},
                project=step.project,
            )
        elif (
            step.setting.description_template_id
            or (step.setting.add_external_participants_from_cc and email.cc)
            or spam.enabled()  # one Akismet call per email: the one-by-one path
        ):
            self.alone.append(row)
        elif not email.subject.strip() and not email.body_text.strip() and not email.attachments:
            self.results[row.pk] = _reject(email, "empty email", {**step.trace, "rule": "empty"},
                                           project=step.project)  # fmt: skip
        else:
            self.issues.append((row, step))
        if email.message_id:
            self.new_here.add(own)

    def _classify_reply(
        self, row: InboundMessage, step: ProjectMail, references: tuple[str, ...], duplicate: bool
    ) -> None:
        """A reply in a thread becomes a note: in bulk when its issue is open and unmoved and the
        reply is plain, otherwise alone (moves, reopening, attachments, duplicates)."""
        pid = step.project.pk
        thread = next(
            (self.open_thread[(m, pid)] for m in references if (m, pid) in self.open_thread), None
        )
        in_batch = any((m, pid) in self.new_here for m in references)
        if step.email.attachments or duplicate or (thread is None and not in_batch):
            self.alone.append(row)
        elif thread is None:
            self.pending.append((row, step, references))  # its issue is created in this batch
        else:
            self.replies.append((row, step, thread))

    def apply_rate_limits(self) -> None:
        """New issues per sender per project, for the whole batch in one Redis round trip."""
        over = ratelimit.hit_many(
            [_rate_key(step.project, _requester(step.email)) for _, step in self.issues],
            limit=settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE,
            window=60,
        )
        kept = []
        for (row, step), limited in zip(self.issues, over, strict=True):
            if limited and _requester(step.email):
                self.results[row.pk] = _reject(
                    step.email, "rate limited", {**step.trace, "rule": "rate limit"},
                    project=step.project,
                )  # fmt: skip
            else:
                kept.append((row, step))
        self.issues = kept

    def write(self) -> None:
        steps = [step for _, step in self.issues]
        issues = _bulk_new_issues(steps, self.bot)
        created = {
            (step.email.message_id, step.project.pk): issue.pk
            for step, issue in zip(steps, issues, strict=True)
            if step.email.message_id
        }
        for row, step, references in self.pending:
            pid = step.project.pk
            thread = next((created[(m, pid)] for m in references if (m, pid) in created), None)
            if thread is None:  # the thread's first email was not created here (rate limited…)
                self.alone.append(row)
            else:
                self.replies.append((row, step, thread))
        self.results.update(_bulk_notes(self.replies, self.bot))
        for (row, step), issue in zip(self.issues, issues, strict=True):
            self.results[row.pk] = Result(
                Outcome.ISSUE_CREATED, "", step.trace, project=step.project, issue=issue
            )


def _requester(email: ParsedEmail) -> str:
    return email.from_address or email.reply_to or email.sender or ""


def _bulk_new_issues(planned: list[ProjectMail], bot: User) -> list[Issue]:
    if not planned:
        return []
    iids: dict[int, Iterator[int]] = {}
    for project_id in {p.project.pk for p in planned}:
        count = sum(1 for p in planned if p.project.pk == project_id)
        iids[project_id] = iter(issue_iids_allocate(project_id=project_id, count=count))
    issues = []
    for p in planned:
        requester = _requester(p.email)
        notify_to = p.email.reply_to if p.email.reply_to and p.email.reply_to != requester else ""
        issues.append(
            Issue(
                project=p.project,
                iid=next(iids[p.project.pk]),
                title=issue_title(p.email.subject or "(no subject)"),
                description=neutralise(p.email.body_text.strip()),
                author=bot,
                confidential=p.setting.tickets_confidential_by_default or p.project.is_public,
                external_author=requester,
                service_desk_reply_to=notify_to,
            )
        )
    Issue.objects.bulk_create(issues)
    _bulk_attachments(issues, planned, bot)
    participants: dict[int, EmailParticipant] = {}
    for issue in issues:
        address = issue.service_desk_reply_to or issue.external_author
        if address:
            participants[issue.pk] = EmailParticipant(issue=issue, email=address)
    EmailParticipant.objects.bulk_create(participants.values())
    IssueEmail.objects.bulk_create(
        [
            IssueEmail(issue=issue, message_id=p.email.message_id[:998], direction="in")
            for issue, p in zip(issues, planned, strict=True)
            if p.email.message_id
        ]
    )
    service_desk_issues_created([(issue, participants.get(issue.pk)) for issue in issues])
    return issues


def _bulk_attachments(issues: list[Issue], planned: list[ProjectMail], bot: User) -> None:
    """Files first (storage), then one INSERT for all uploads, one UPDATE for descriptions."""
    stored: list[tuple[Issue, list[tuple[Any, Upload]]]] = []
    for issue, p in zip(issues, planned, strict=True):
        if not p.email.attachments:
            continue
        pairs = []
        for attachment in p.email.attachments:
            upload = Upload(
                project_id=issue.project_id,
                issue=issue,
                filename=attachment.filename,
                content_type=attachment.content_type or "application/octet-stream",
                size=len(attachment.content),
                uploaded_by=bot,
            )
            upload.file.save(attachment.filename, ContentFile(attachment.content), save=False)
            pairs.append((attachment, upload))
        stored.append((issue, pairs))
    if not stored:
        return
    Upload.objects.bulk_create([upload for _, pairs in stored for _, upload in pairs])
    for issue, pairs in stored:
        body, links = _link_uploads(issue.description, pairs)
        issue.description = "\n\n".join(part for part in (body, links) if part)
    Issue.objects.bulk_update([issue for issue, _ in stored], ["description"])


def _note_body(email: ParsedEmail) -> str:
    reply, quoted = split_reply(email.body_text)
    parts = [neutralise(reply.strip())]
    if quoted.strip():
        parts.append(
            '<details markdown="1">\n<summary>Quoted text</summary>\n\n'
            f"{neutralise(quoted.strip())}\n\n</details>"
        )
    return "\n\n".join(p for p in parts if p)


def _bulk_notes(
    replies: list[tuple[InboundMessage, ProjectMail, int]], bot: User
) -> dict[int, Result]:
    """Plain replies to open issues: one INSERT for the notes, one for their Message-IDs."""
    results: dict[int, Result] = {}
    notes: list[tuple[InboundMessage, ProjectMail, Note]] = []
    for row, step, issue_id in replies:
        body = _note_body(step.email)
        if not body.strip():
            results[row.pk] = _reject(step.email, "empty reply", {**step.trace, "rule": "empty"},
                                      project=step.project)  # fmt: skip
            continue
        author = step.email.from_address or step.email.reply_to or ""
        notes.append((row, step, Note(issue_id=issue_id, author=bot, body=body,
                                      external_author=author)))  # fmt: skip
    if not notes:
        return results
    Note.objects.bulk_create([note for _, _, note in notes])
    emails = []
    for _, step, note in notes:
        note.issue.project = step.project  # loaded already: no query per note
        emails += note_added(note, send=False)
    send_after_commit(emails)
    Issue.objects.filter(pk__in={note.issue_id for _, _, note in notes}).update(
        updated_at=timezone.now()
    )
    IssueEmail.objects.bulk_create(
        [
            IssueEmail(issue_id=note.issue_id, message_id=step.email.message_id[:998],
                       direction="in")
            for _, step, note in notes
            if step.email.message_id
        ],
        ignore_conflicts=True,
    )  # fmt: skip
    rule = "thread (In-Reply-To/References)"
    for row, step, note in notes:
        results[row.pk] = Result(
            Outcome.NOTE_ADDED,
            "",
            {**step.trace, "rule": rule},
            project=step.project,
            issue_id=note.issue_id,
            note=note,
        )
    return results
