"""What inbound emails become: one path for one email or a batch of them.

Two phases (the ledger runs them; see mailroom/ledger.py):

1. ``plan(rows)`` decides, and only reads: no transaction and no row locks, so the HTTP call to
   Akismet and the rate limit's Redis round trip never hold a lock. Each email is parsed, waits
   if it names an earlier email still in the ledger, goes through the rules (size, bounces,
   robots, loops), has its key found and resolved (a project, a reply key, an unsubscribe
   token), is threaded or found a duplicate, and a new issue passes its gates (rate limit,
   spam). The result is one decision per email.
2. ``carry_out(decisions)`` writes, in the ledger's transaction: bounces and unsubscribes, every
   new issue in one call to ``issues.services.issues_create``, every note in one call to
   ``notes_create``, closed issues reopened. It returns the Result to record for each email.

The sender's faults come back as ``rejected``/``ignored`` results (never retried); anything
raised is our fault and is retried by the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import User
from issues.emails import is_guessable_message_id
from issues.models import EmailParticipant, Issue, IssueEmail, Note, SentNotification
from issues.quick_actions import (
    QuickActionResult,
    apply_quick_actions,
    neutralise,
    quick_actions_finish,
)
from issues.services import (
    NewIssue,
    NewNote,
    issue_reopen,
    issues_create,
    notes_create,
    participant_unsubscribe,
    participants_mark_bouncing,
)
from projects import permissions
from projects.custom_email import VerificationEmail, custom_email_verification_received
from projects.models import CustomEmail, Project, ServiceDeskSetting, slugify_path
from servicedesk import ratelimit
from servicedesk.addresses import is_our_address

from . import spam
from .models import WAITING, InboundMessage
from .parsing import Attachment, MalformedEmail, ParsedEmail, parse_email
from .routing import (
    SERVICE_DESK_MAILBOX,
    ParsedKey,
    RouteMatch,
    custom_key_candidates,
    default_key_candidates,
    find_key,
    header_addresses,
    parse_key,
    reply_key_from_message_id,
)
from .rules import DeliveryReport, auto_generated_reason, delivery_report
from .scrub import scrub_secrets
from .senders import authentication_failure, normalise_sender

log = logging.getLogger(__name__)
Outcome = InboundMessage.Outcome
Status = InboundMessage.Status
MAX_MOVE_HOPS = 20
THREAD_RULE = "thread (In-Reply-To/References)"
Trace = dict[str, Any]
Planned = tuple[str, int]  # (Message-ID, project id) of a new issue planned in this batch


@dataclass
class Result:
    outcome: str
    reason: str = ""
    decision: Trace = field(default_factory=dict)
    project: Project | None = None
    issue: Issue | None = None
    note: Note | None = None
    rejection_notice_due: bool = False


def redact(key: str) -> str:
    """Reply keys are credentials: logs and traces keep only their first characters."""
    if len(key) >= 32 and all(c in "0123456789abcdef" for c in key[:32].lower()):
        return f"{key[:6]}…{key[32:]}"
    return key


# --- Decisions ----------------------------------------------------------------------------------


@dataclass
class Settled:
    """Nothing to write: the email's outcome is known (rejected, ignored, waiting, spam)."""

    result: Result


@dataclass
class Bounce:
    report: DeliveryReport
    trace: Trace


@dataclass
class Unsubscribe:
    sent: SentNotification
    trace: Trace


@dataclass
class IssueFromEmail:
    row: InboundMessage
    email: ParsedEmail
    project: Project
    setting: ServiceDeskSetting
    trace: Trace
    requester: str
    notify_to: str  # Reply-To, when it differs from the requester
    gated: bool = False  # rate limit and spam check done

    @property
    def planned(self) -> Planned:
        return (self.email.message_id or f"row-{self.row.pk}", self.project.pk)

    @property
    def participants(self) -> set[str]:
        cc = self.email.cc if self.setting.add_external_participants_from_cc else []
        return {a.lower() for a in (self.requester, self.notify_to, *cc) if a}


@dataclass
class NoteFromEmail:
    row: InboundMessage
    email: ParsedEmail
    trace: Trace
    body: str  # the new text, as stored (see _reply_texts)
    quoted: str  # the quoted history, kept apart
    issue_id: int | None = None  # an existing issue (moves followed when written)
    planned: Planned | None = None  # or one created in this batch
    held: bool = False  # from a non-participant without a key: internal, emailed to nobody
    member: User | None = None  # a team member answering their notification: their comment
    actions: QuickActionResult | None = None  # the member's quick actions; a /move still to run


@dataclass
class Verification:
    """A custom email address's verification email, forwarded back to us: never an issue."""

    mail: VerificationEmail
    project: Project
    trace: Trace


Decision = Settled | Bounce | Unsubscribe | IssueFromEmail | NoteFromEmail | Verification


# --- Phase 1: plan ------------------------------------------------------------------------------


def plan(rows: Sequence[InboundMessage]) -> dict[int, Decision]:
    """Decide what each email becomes (rows in arrival order); reads only."""
    return _Planner(rows).decide_all()


@dataclass
class _Record:
    """A Message-ID stored for an issue (IssueEmail), as threading needs it."""

    message_id: str
    direction: str
    issue_id: int
    project_id: int


class _Planner:
    """Lookups shared by the emails of a batch: one query each, whatever the batch's size."""

    def __init__(self, rows: Sequence[InboundMessage]) -> None:
        self.rows = list(rows)
        self.decisions: dict[int, Decision] = {}
        self.records: dict[str, list[_Record]] = {}  # by Message-ID, newest first
        self.participants: set[tuple[int, str]] = set()  # (issue id, lowercased address)
        self.sent: dict[tuple[str, str], SentNotification] = {}  # (kind, key) → notification
        self.projects: dict[str, Project | None] = {}  # by raw key
        self.planned: dict[Planned, IssueFromEmail] = {}
        self.noted: set[tuple[str, int | Planned]] = set()  # (Message-ID, issue) of notes here
        self.customs: dict[str, CustomEmail] = {}  # by lowercased address

    def decide_all(self) -> dict[int, Decision]:
        parsed = self._parse()
        self._look_up(parsed)
        # Projects' own addresses named in To, for the whole batch: one query.
        self.customs = _custom_emails(
            {base for _, email in parsed for base, _ in map(_split_detail, _to_addresses(email))}
        )
        routes = {row.pk: self._route(row, email) for row, email in parsed}
        self._look_up_keys(routes.values())
        pending = parsed
        for _ in range(3):  # refused new issues make their in-batch replies decide again
            for row, email in pending:
                route = routes[row.pk]
                self.decisions[row.pk] = (
                    route if not isinstance(route, _Route) else self._decide(row, email, route)
                )
            refused = self._gate()
            pending = [
                (d.row, d.email)
                for d in self.decisions.values()
                if isinstance(d, NoteFromEmail) and d.planned in refused
            ]
            if not pending:
                break
        return self.decisions

    # Parsing and waiting ------------------------------------------------------------------

    def _parse(self) -> list[tuple[InboundMessage, ParsedEmail]]:
        parsed = []
        for row in self.rows:
            email = _parse(row)
            if isinstance(email, Result):
                self.decisions[row.pk] = Settled(email)
            else:
                parsed.append((row, email))
        waiting = waiting_for_earlier(parsed, {row.pk for row in self.rows})
        self.decisions.update({pk: Settled(result) for pk, result in waiting.items()})
        return [(row, email) for row, email in parsed if row.pk not in waiting]

    def _look_up(self, parsed: list[tuple[InboundMessage, ParsedEmail]]) -> None:
        """Every Message-ID the batch names, as stored for issues; their issues' participants."""
        mentioned = {mid for _, email in parsed for mid in _named_message_ids(email)}
        if not mentioned:
            return
        issue_ids = set()
        rows = IssueEmail.objects.filter(message_id__in=mentioned).order_by("-created_at", "-id")
        for values in rows.values_list("message_id", "direction", "issue_id", "issue__project_id"):
            record = _Record(*values)
            self.records.setdefault(record.message_id, []).append(record)
            issue_ids.add(record.issue_id)
        self.participants |= _participants(issue_ids)

    # The rules and the key ----------------------------------------------------------------

    def _route(self, row: InboundMessage, email: ParsedEmail) -> Decision | _Route:
        """The rules, then the key: a decision when the email's fate is settled by them."""
        trace: Trace = {"size": row.size}
        if row.size > settings.SERVICEDESK_MAX_EMAIL_SIZE:
            limit = settings.SERVICEDESK_MAX_EMAIL_SIZE / 1024 / 1024
            reason = f"too large ({row.size / 1024 / 1024:.1f} MB > {limit:.0f} MB)"
            return Settled(_reject(email, reason, {**trace, "rule": "too large"}))
        verification = _verification(email, trace, self.customs)
        if verification is not None:
            return verification
        report = (
            delivery_report(bytes(row.raw), mailboxes=_mailboxes())
            if _may_be_bounce(email)
            else None
        )
        if report is not None:
            return Bounce(report, trace)
        robot = auto_generated_reason(email.headers, content_type=email.content_type)
        if robot:
            return Settled(
                Result(Outcome.IGNORED, f"auto-generated: {robot}", {**trace, "rule": robot})
            )
        loop = self._loop_reason(email)
        if loop:
            return Settled(Result(Outcome.IGNORED, f"loop: {loop}", {**trace, "rule": "loop"}))
        custom = _custom_address_route(email, trace, self.customs)
        if custom is not None:
            return custom
        match = find_key(email.headers, _mailboxes())
        if match is None:
            return Settled(_reject(email, "no key found", {**trace, "rule": "no key"}))
        trace.update(header=match.header, mailbox=match.mailbox, key=redact(match.key))
        key = parse_key(match.key, match.mailbox)
        if key is None:
            return Settled(
                _reject(email, "project not found", {**trace, "rule": "unrecognised key"})
            )
        trace["key_kind"] = key.kind
        return _Route(key, match.key.lower(), trace)

    def _loop_reason(self, email: ParsedEmail) -> str:
        records = self.records.get(email.message_id or "", [])
        if any(r.direction == IssueEmail.Direction.OUTBOUND for r in records):
            return "the Message-ID is one we sent"
        for address in (email.from_address, email.sender):
            if is_our_address(address):
                return f"sent from our own address {address}"
        # Gmail-style forwarding names the forwarding mailbox first in X-Forwarded-For. Mail
        # *from* that mailbox is the mailbox writing to itself — verification mails ("Verify
        # custom email address…") and forwarding loops — never a customer; it must not open an
        # issue, nor get a thank-you that would hand a verification secret to whoever asked.
        for value in email.header_all("X-Forwarded-For"):
            forwarder = value.split()[0].strip("<>").lower() if value.split() else ""
            if forwarder and forwarder == (email.from_address or "").lower():
                return f"sent by the mailbox that forwards to us ({forwarder})"
        return ""

    def _look_up_keys(self, routes: Iterable[Decision | _Route]) -> None:
        """Reply keys and unsubscribe tokens of the batch: one query."""
        keys = [r.key for r in routes if isinstance(r, _Route) and r.key.kind in _SENT_KINDS]
        if not keys:
            return
        wanted = {k.reply_key for k in keys}
        found = SentNotification.objects.select_related("issue", "participant", "user").filter(
            Q(reply_key__in=wanted) | Q(unsubscribe_token__in=wanted)
        )
        for sent in found:
            self.sent[("reply", sent.reply_key)] = sent
            self.sent[("unsubscribe", sent.unsubscribe_token)] = sent
        self.participants |= _participants({sent.issue_id for sent in found})

    # Deciding ---------------------------------------------------------------------------------

    def _decide(self, row: InboundMessage, email: ParsedEmail, route: _Route) -> Decision:
        trace = dict(route.trace)
        if route.key.kind in _SENT_KINDS:
            # The unsubscribe address has its own token, never the reply key (SentNotification).
            sent = self.sent.get((route.key.kind, route.key.reply_key))
            if sent is None:
                return Settled(
                    _reject(email, "reply key not found", {**trace, "rule": "unknown reply key"})
                )
            if route.key.kind == "unsubscribe":
                return Unsubscribe(sent, trace)
            if sent.user is not None:
                return self._member_reply(row, email, trace, sent.user, sent.issue)
            return self._note(row, email, {**trace, "rule": "reply key"}, issue_id=sent.issue_id)
        project = self._project(route)
        if project is None:
            return Settled(
                _reject(email, "project not found", {**trace, "rule": "no such project"})
            )
        setting = project.service_desk
        if not setting.service_desk_enabled:
            return Settled(
                _reject(
                    email,
                    "project not found",
                    {**trace, "rule": "service desk off"},
                    project=project,
                )
            )
        return self._project_mail(row, email, project, setting, trace)

    def _member_reply(
        self, row: InboundMessage, email: ParsedEmail, trace: Trace, member: User, issue: Issue
    ) -> Decision:
        """A reply to a team notification: the key was sent to one member, so it counts only
        from their own address (a forwarded notification gives nobody else their voice), and
        only while they may still comment."""
        trace = {**trace, "rule": "team member's reply key"}
        sender = (email.from_address or "").lower()
        if not member.is_active or sender != member.email.lower():
            return Settled(_reject(email, "reply key of another sender", trace))
        if not permissions.can_comment_on_issue(member, issue):
            return Settled(_reject(email, "may not comment on this issue", trace))
        return self._note(row, email, trace, issue_id=issue.pk, member=member)

    def _project(self, route: _Route) -> Project | None:
        if route.project is not None:
            return route.project
        if route.raw_key not in self.projects:
            self.projects[route.raw_key] = _project_for(route.key, route.raw_key)
        return self.projects[route.raw_key]

    def _project_mail(
        self,
        row: InboundMessage,
        email: ParsedEmail,
        project: Project,
        setting: ServiceDeskSetting,
        trace: Trace,
    ) -> Decision:
        """A reply in one of the project's threads becomes a note; anything else a new issue."""
        thread = self._thread(email, project)
        if thread is not None:
            issue_id, planned, via_reply_key = thread
            sender = (email.from_address or "").lower()
            held = not via_reply_key and not self._is_participant(issue_id, planned, sender)
            if held:
                trace["non_participant"] = True
            return self._note(
                row,
                email,
                {**trace, "rule": THREAD_RULE},
                issue_id=issue_id,
                planned=planned,
                held=held,
            )
        own = email.message_id
        if own and (
            any(r.project_id == project.pk for r in self.records.get(own, []))
            or (own, project.pk) in self.planned
        ):
            return Settled(
                Result(
                    Outcome.IGNORED,
                    "duplicate: an issue already exists for this Message-ID",
                    {**trace, "rule": "duplicate"},
                    project=project,
                )
            )
        if not email.subject.strip() and not email.body_text.strip() and not email.attachments:
            return Settled(
                _reject(email, "empty email", {**trace, "rule": "empty"}, project=project)
            )
        requester = _requester(email)
        decision = IssueFromEmail(
            row, email, project, setting, trace, requester, _notify_to(email, requester)
        )
        self.planned[decision.planned] = decision
        return decision

    def _thread(
        self, email: ParsedEmail, project: Project
    ) -> tuple[int | None, Planned | None, bool] | None:
        """(issue id, or the planned issue, whether a reply key named it) of the thread the
        email answers, if any.

        Message-IDs we send are random (reply keys, thread tokens) and customers' own cannot
        be guessed by strangers; the sequential roots of older issues can, so they count only
        when the sender is a participant of the issue.
        """
        references = [m for m in (*email.in_reply_to, *email.references) if m][:100]
        sender = (email.from_address or "").lower()
        candidates = [
            r for m in references for r in self.records.get(m, []) if r.project_id == project.pk
        ]
        candidates.sort(key=lambda r: self._age(r))
        for record in candidates:
            if is_guessable_message_id(record.message_id) and not self._is_participant(
                record.issue_id, None, sender
            ):
                continue
            return record.issue_id, None, reply_key_from_message_id(record.message_id) is not None
        for message_id in references:
            if (message_id, project.pk) in self.planned:
                return None, (message_id, project.pk), False
        return None

    def _age(self, record: _Record) -> int:
        """Newest first, as the records were read."""
        return self.records[record.message_id].index(record)

    def _is_participant(self, issue_id: int | None, planned: Planned | None, address: str) -> bool:
        if planned is not None:
            return address in self.planned[planned].participants
        return (issue_id or 0, address) in self.participants

    def _note(
        self,
        row: InboundMessage,
        email: ParsedEmail,
        trace: Trace,
        *,
        issue_id: int | None,
        planned: Planned | None = None,
        held: bool = False,
        member: User | None = None,
    ) -> Decision:
        target: int | Planned = planned if planned is not None else issue_id or 0
        own = email.message_id
        if own and (
            (own, target) in self.noted
            or any(r.issue_id == issue_id for r in self.records.get(own, []))
        ):
            return Settled(
                Result(
                    Outcome.IGNORED,
                    "duplicate: this Message-ID is already on the issue",
                    {**trace, "rule": "duplicate"},
                )
            )
        body, quoted = _reply_texts(email, commands=member is not None)
        if not body and not email.attachments:
            return Settled(_reject(email, "empty reply", {**trace, "rule": "empty"}))
        if own:
            self.noted.add((own, target))
        return NoteFromEmail(
            row,
            email,
            trace,
            body,
            quoted,
            issue_id=issue_id,
            planned=planned,
            held=held,
            member=member,
        )

    # The gates of a new issue -------------------------------------------------------------

    def _gate(self) -> set[Planned]:
        """Rate limits (one round trip for the batch), then Akismet, for new issues not yet
        checked. Returns the planned issues refused."""
        fresh = [
            d for d in self.decisions.values() if isinstance(d, IssueFromEmail) and not d.gated
        ]
        over = ratelimit.hit_many(
            [_rate_key(d.project, d.requester) for d in fresh],
            limit=settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE,
            window=60,
        )
        refused = set()
        for decision, limited in zip(fresh, over, strict=True):
            decision.gated = True
            verdict = None if limited else _spam_verdict(decision)
            if limited:
                verdict = _reject(
                    decision.email,
                    "rate limited",
                    {**decision.trace, "rule": "rate limit"},
                    project=decision.project,
                )
            if verdict is not None:
                self.decisions[decision.row.pk] = Settled(verdict)
                self.planned.pop(decision.planned, None)
                refused.add(decision.planned)
        return refused


@dataclass
class _Route:
    """An email that passed the rules, and the key it was sent to."""

    key: ParsedKey
    raw_key: str
    trace: Trace
    project: Project | None = None  # already known (a project's own address in To)


# --- A project's own (custom) address --------------------------------------------------------


def _to_addresses(email: ParsedEmail) -> list[str]:
    found = []
    for value in email.header_all("To")[:10]:
        found += [a.strip().strip("<>").lower() for a in header_addresses(value)[:50]]
    return [a for a in found if "@" in a]


def _custom_emails(addresses: set[str]) -> dict[str, CustomEmail]:
    if not addresses:
        return {}
    found = (
        CustomEmail.objects.select_related("project__service_desk")
        .annotate(lowered=Lower("address"))
        .filter(lowered__in=addresses)
    )
    return {c.address.lower(): c for c in found}


def _split_detail(address: str) -> tuple[str, str]:
    """``support+abc@x`` → (``support@x``, ``abc``); no detail: (address, "")."""
    local, _, domain = address.rpartition("@")
    base, plus, detail = local.partition("+")
    return (f"{base}@{domain}", detail) if plus else (address, "")


def _verification(
    email: ParsedEmail, trace: Trace, known: dict[str, CustomEmail]
) -> Verification | None:
    """The verification email of a custom address (To ``<local>+verify@<domain>``), checked
    before any rule: it must never become an issue nor be answered (it holds the token)."""
    split = map(_split_detail, _to_addresses(email))
    customs = [known[base] for base, detail in split if detail == "verify" and base in known]
    if not customs:
        return None
    custom = customs[0]
    match = find_key(email.headers, _mailboxes())
    wrong_target = not _forwarded_to_project(match, custom.project)
    trace = {**trace, "rule": "custom email verification", "custom_email": custom.address}
    if match is not None:
        trace.update(header=match.header, mailbox=match.mailbox, key=redact(match.key))
    mail = VerificationEmail(
        custom_id=custom.pk,
        from_address=email.from_address or "",
        body=email.body_text,
        wrong_target=wrong_target,
    )
    return Verification(mail, custom.project, trace)


def _projects_own_addresses(decisions: list[IssueFromEmail]) -> set[str]:
    """The projects' own addresses among the Cc'd of new issues (one query)."""
    cc = {
        _split_detail(a.strip().lower())[0]
        for d in decisions
        if d.setting.add_external_participants_from_cc
        for a in d.email.cc
    }
    return set(_custom_emails(cc))


def _forwarded_to_project(match: RouteMatch | None, project: Project) -> bool:
    """Whether the email came to the project's own Service Desk address (not the alias
    mailbox, nor another project's address)."""
    if match is None or match.mailbox == SERVICE_DESK_MAILBOX:
        return False
    key = parse_key(match.key, match.mailbox)
    if key is None or key.kind not in ("default", "legacy"):
        return False
    found = _project_for(key, match.key.lower())
    return found is not None and found.pk == project.pk


def _custom_address_route(
    email: ParsedEmail, trace: Trace, customs: dict[str, CustomEmail]
) -> _Route | None:
    """Mail a provider forwarded from a project's own address: ``<local>+<reply key>@<domain>``
    in To is a reply (our Reply-To), the address itself a new email to the project (Microsoft
    365 forwards without the +key). Only addresses that are verified count."""
    for base, detail in map(_split_detail, _to_addresses(email)):
        custom = customs.get(base)
        if custom is None or custom.state != CustomEmail.State.VERIFIED:
            continue
        route_trace = {**trace, "header": "To", "custom_email": custom.address}
        if detail and (key := parse_key(detail, "")) is not None and key.kind == "reply":
            route_trace.update(key=redact(detail), key_kind="reply")
            return _Route(key, detail.lower(), route_trace)
        if not detail:
            route_trace.update(key_kind="custom address")
            raw = f"custom-address:{custom.project_id}"
            return _Route(ParsedKey(kind="custom"), raw, route_trace, project=custom.project)
    return None


_SENT_KINDS = ("reply", "unsubscribe")


def _spam_verdict(decision: IssueFromEmail) -> Result | None:
    """Akismet's verdict on a new issue: quarantined (no issue, no thank-you) when spam."""
    if decision.row.spam_released or not spam.enabled():
        return None
    is_spam, verdict = spam.check(decision.email)
    decision.trace["akismet"] = verdict
    if not is_spam:
        return None
    return Result(
        Outcome.SPAM,
        f"spam ({verdict})",
        {**decision.trace, "rule": "akismet"},
        project=decision.project,
    )


def _participants(issue_ids: set[int]) -> set[tuple[int, str]]:
    """(issue id, lowercased address) of every email participant of these issues (any state),
    and of each issue's requester."""
    if not issue_ids:
        return set()
    rows = EmailParticipant.objects.filter(issue_id__in=issue_ids).values_list("issue_id", "email")
    authors = Issue.objects.filter(pk__in=issue_ids).exclude(external_author="")
    found = {(issue_id, email.lower()) for issue_id, email in rows}
    found |= {(pk, a.lower()) for pk, a in authors.values_list("pk", "external_author")}
    return found


# --- Waiting for earlier emails -----------------------------------------------------------------


def _named_message_ids(email: ParsedEmail) -> set[str]:
    """The Message-IDs an email names: its own (a copy may be in the ledger twice) and those
    it answers."""
    named = (email.message_id, *email.in_reply_to[:50], *email.references[:50])
    return {mid[:998] for mid in named if mid}


def waiting_for_earlier(
    parsed: list[tuple[InboundMessage, ParsedEmail]], batch_ids: set[int]
) -> dict[int, Result]:
    """Emails that must wait: each names an earlier email that is still queued or being
    processed (outside this batch), or one of this batch that waits itself.

    Only earlier rows count, so two emails never wait for each other. One query per batch.
    """
    named = {row.pk: _named_message_ids(email) for row, email in parsed}
    wanted = set().union(*named.values())
    if not wanted:
        return {}
    unfinished: dict[str, list[int]] = {}
    for pk, message_id in (
        InboundMessage.objects.filter(
            message_id__in=wanted, status__in=[Status.QUEUED, Status.PROCESSING]
        )
        .exclude(pk__in=batch_ids)
        .values_list("pk", "message_id")
    ):
        unfinished.setdefault(message_id, []).append(pk)
    waiting: dict[int, Result] = {}
    for row, email in sorted(parsed, key=lambda pair: pair[0].pk):
        blocker = min(
            (pk for mid in named[row.pk] for pk in unfinished.get(mid, ()) if pk < row.pk),
            default=None,
        )
        if blocker is None:
            continue
        waiting[row.pk] = Result(
            WAITING,
            f"waiting for inbound #{blocker}, which it names, to be processed first",
            {"rule": "wait", "waiting_for": blocker},
        )
        if email.message_id:  # what answers this one waits too
            unfinished.setdefault(email.message_id[:998], []).append(row.pk)
    return waiting


# --- Small decisions ----------------------------------------------------------------------------


def _mailboxes() -> list[Any]:
    return [m for m in settings.SERVICEDESK_MAILBOXES.values() if m.enabled]


def _parse(row: InboundMessage) -> ParsedEmail | Result:
    try:
        email = parse_email(bytes(row.raw))
    except MalformedEmail as exc:
        return Result(Outcome.REJECTED, f"malformed email: {exc}", {"rule": "malformed"})
    row.message_id = (email.message_id or "")[:998]
    row.from_address = (email.from_address or "")[:320]
    row.subject = email.subject[:998]
    return email


def _may_be_bounce(email: ParsedEmail) -> bool:
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


def _reject(
    email: ParsedEmail, reason: str, decision: Trace, project: Project | None = None
) -> Result:
    # The sender gets one short "[Rejected]" notice (at most one per hour, sent by the outbound
    # code), unless there is nobody to answer.
    return Result(
        Outcome.REJECTED,
        reason,
        decision,
        project=project,
        rejection_notice_due=bool(email.from_address)
        and not is_our_address(email.from_address)
        # Size is checked before the auto-generated rules: never answer a robot anyway.
        and not auto_generated_reason(email.headers, content_type=email.content_type)
        # Nor a forged sender: the notice would carry the forger's subject to someone else.
        and not _authentication_failure(email),
    )


def _authentication_failure(email: ParsedEmail) -> str:
    """Why our mail server found the From domain forged (DMARC/SPF/DKIM), or ""."""
    return authentication_failure(email.header_all("Authentication-Results"), email.from_address)


def _requester(email: ParsedEmail) -> str:
    return email.from_address or email.reply_to or email.sender or ""


def _notify_to(email: ParsedEmail, requester: str) -> str:
    """Where answers go when Reply-To differs from the requester (never to ourselves)."""
    reply_to = email.reply_to
    if not reply_to or reply_to == requester or is_our_address(reply_to):
        return ""
    return reply_to


def _rate_key(project: Project, sender: str) -> str:
    # One mailbox, one counter (case, +tags); mail without any sender shares one counter.
    return f"new-issue:{project.pk}:{normalise_sender(sender) if sender else '<no sender>'}"


def _project_for(key: ParsedKey, raw_key: str) -> Project | None:
    projects = Project.objects.select_related("service_desk")
    if key.kind == "default":
        # "<slug>-<id>-<token>-issue-" and "<slug>-<id>-issue-" can overlap (slugs hold digits):
        # try every reading; slug, id and token must all agree with one project.
        for reading in default_key_candidates(raw_key):
            project = projects.filter(pk=reading.project_id or 0).first()
            if (
                project is not None
                and reading.project_slug in _slugs(project)
                and reading.token in _valid_tokens(project.service_desk)
            ):
                return project
        return None
    if key.kind == "legacy":
        # "incoming+group/project@" can be guessed from the path: once a project regenerated
        # its address (it wants the old one retired), the legacy form is retired as well.
        project = projects.filter(full_path__iexact=key.full_path).first()
        if project is None:  # the path it had before a rename (projects.RedirectRoute)
            project = projects.filter(redirect_routes__path__iexact=key.full_path).first()
        if project is not None and project.service_desk.address_token:
            return None
        return project
    if key.kind == "custom":
        # Slugs contain dashes: try every split; the slug tells projects with one suffix apart.
        for slug, suffix in custom_key_candidates(raw_key):
            for project in projects.filter(service_desk__project_key=suffix):
                if slug in _slugs(project):
                    return project
    return None


def _slugs(project: Project) -> set[str]:
    """The project's path slug, and those of the paths it had before a rename or a move: its
    addresses hold the slug, and customers keep writing to the old ones. The token must still
    be valid: "regenerate address" retires old addresses whatever their slug."""
    former = project.redirect_routes.values_list("path", flat=True)
    return {project.full_path_slug, *(slugify_path(path) for path in former)}


def _valid_tokens(setting: ServiceDeskSetting) -> set[str]:
    """The address token, and the one before "regenerate address" during its grace period."""
    tokens = {setting.address_token.lower()}
    expires = setting.previous_address_expires_at
    if expires is not None and expires > timezone.now():
        tokens.add(setting.previous_address_token.lower())
    return tokens


def _reply_texts(email: ParsedEmail, *, commands: bool = False) -> tuple[str, str]:
    """A reply's new text and its quoted history, each as stored: our secrets cut out (quotes
    of our emails carry keys), slash commands made inert — except, with ``commands``, in a
    team member's own text, where they are carried out when the note is written."""
    reply, quoted = scrub_secrets(email.split_reply())
    reply = reply.strip() if commands else neutralise(reply.strip())
    return reply, neutralise(quoted.strip())


def _attachments_kept(email: ParsedEmail) -> tuple[list[Attachment], str]:
    """The attachments stored as files (at most SERVICEDESK_MAX_ATTACHMENTS_PER_EMAIL), and
    what the issue is told: what parsing cut or simplified, and how many files were left out.
    Read after the email's text, so that every cut is known. The raw email keeps everything."""
    limit = settings.SERVICEDESK_MAX_ATTACHMENTS_PER_EMAIL
    found = email.attachments
    said = list(email.truncated)
    if len(found) > limit:
        said.append(
            f"{len(found) - limit} more attachments were not stored: an email keeps at most "
            f"{limit} files."
        )
    if not said:
        return found, ""
    lines = "\n".join(f"- {sentence}" for sentence in said)
    return found[:limit], (
        "*Not everything in this email is shown here; the original email, in the project's "
        f"inbound ledger, has it all:*\n\n{lines}"
    )


# --- Phase 2: carry out -------------------------------------------------------------------------


def carry_out(decisions: dict[int, Decision], bot: User) -> dict[int, Result]:
    """Write what was decided (in the caller's transaction); the Result of each email."""
    results: dict[int, Result] = {}
    for pk, decision in decisions.items():
        if isinstance(decision, Settled):
            results[pk] = decision.result
        elif isinstance(decision, Bounce):
            results[pk] = _bounce(decision, bot)
        elif isinstance(decision, Unsubscribe):
            results[pk] = _unsubscribe(decision, bot)
        elif isinstance(decision, Verification):
            outcome = custom_email_verification_received(decision.mail)
            results[pk] = Result(
                Outcome.IGNORED,
                f"custom email verification: {outcome}",
                {**decision.trace, "verification": outcome},
                project=decision.project,
            )
    new = [d for d in decisions.values() if isinstance(d, IssueFromEmail)]
    created = _issues_from_email(new, bot)
    for decision in new:
        issue = created[decision.planned]
        results[decision.row.pk] = Result(
            Outcome.ISSUE_CREATED, "", decision.trace, project=decision.project, issue=issue
        )
    notes = [d for d in decisions.values() if isinstance(d, NoteFromEmail)]
    results.update(_notes_from_email(notes, created, bot))
    return results


def _issues_from_email(decisions: list[IssueFromEmail], bot: User) -> dict[Planned, Issue]:
    specs = []
    texts = scrub_secrets([d.email.body_text.strip() for d in decisions])
    forged = [_authentication_failure(d.email) for d in decisions]
    projects_own = _projects_own_addresses(decisions)
    for decision, text, forgery in zip(decisions, texts, forged, strict=True):
        files, left_out = _attachments_kept(decision.email)
        setting, email = decision.setting, decision.email
        cc = email.cc if setting.add_external_participants_from_cc else []
        # A project's own address in Cc (the customer wrote to it and to us) is no participant:
        # emails to it would come back to us through the forwarding.
        cc = [a for a in cc if _split_detail(a.strip().lower())[0] not in projects_own]
        template = setting.description_template
        specs.append(
            NewIssue(
                project=decision.project,
                title=email.subject or "(no subject)",
                description=neutralise(text),
                confidential=setting.tickets_confidential_by_default or decision.project.is_public,
                external_author=decision.requester,
                service_desk_reply_to=decision.notify_to,
                files=files,
                footnote=left_out,
                names=email.names,
                template=template.content if template is not None else "",
                message_id=email.message_id or "",
                requester=decision.notify_to or decision.requester,
                cc=[
                    a
                    for a in cc
                    if a.lower() not in (decision.requester.lower(), decision.notify_to.lower())
                ],
                notify=not forgery,
            )
        )
        if forgery:
            decision.trace["authentication"] = forgery
    issues = issues_create(author=bot, items=specs)
    notes_create(
        [
            NewNote(
                issue=issue,
                author=bot,
                body=f"sent no automatic email: our mail server reports {forgery} (the sender "
                "address is probably forged)",
                system=True,
                internal=True,
            )
            for issue, forgery in zip(issues, forged, strict=True)
            if forgery
        ]
    )
    return {d.planned: issue for d, issue in zip(decisions, issues, strict=True)}


def _notes_from_email(
    decisions: list[NoteFromEmail], created: dict[Planned, Issue], bot: User
) -> dict[int, Result]:
    existing = _issues_after_moves({d.issue_id for d in decisions if d.issue_id is not None})
    targets = [created[d.planned] if d.planned else existing[d.issue_id or 0] for d in decisions]
    results: dict[int, Result] = {}
    written: list[tuple[NoteFromEmail, Issue]] = []
    specs = []
    for decision, issue in zip(decisions, targets, strict=True):
        if decision.member is not None:
            spec_or_result = _member_note(decision, decision.member, issue)
            if isinstance(spec_or_result, Result):
                results[decision.row.pk] = spec_or_result
                continue
            specs.append(spec_or_result)
        else:
            specs.append(_customer_note(decision, issue, bot))
        written.append((decision, issue))
    notes = notes_create(specs)
    for decision, _issue in written:
        _member_actions_finish(decision)
    _reopen([issue for d, issue in written if not d.held and d.member is None], bot)
    results.update(
        {
            d.row.pk: Result(
                Outcome.NOTE_ADDED, "", d.trace, project=issue.project, issue=issue, note=note
            )
            for (d, issue), note in zip(written, notes, strict=True)
        }
    )
    return results


def _customer_note(decision: NoteFromEmail, issue: Issue, bot: User) -> NewNote:
    files, left_out = _attachments_kept(decision.email)
    author = decision.email.from_address or decision.email.reply_to or ""
    return NewNote(
        issue=issue,
        author=bot,
        body=decision.body,
        quoted=decision.quoted,
        files=files,
        footnote=left_out,
        external_author=author,
        external_name=decision.email.name_of(author),
        from_non_participant=decision.held,
        message_id=decision.email.message_id or "",
        # The other participants (Cc'd people) get the customer's reply.
        notify=not decision.held,
    )


def _member_note(decision: NoteFromEmail, member: User, issue: Issue) -> NewNote | Result:
    """A team member's email reply: their public comment, emailed to the customer like one
    written in the browser; the quoted notification dropped; their quick actions carried out
    when they may update the issue (the sidebar's rule), inert otherwise."""
    if not permissions.can_comment_on_issue(member, issue):  # the issue was moved since
        return _reject(decision.email, "may not comment on this issue", decision.trace)
    body = decision.body
    if permissions.can_update_issue(member, issue):
        decision.actions = apply_quick_actions(issue=issue, text=body, user=member)
        body = decision.actions.text
    else:
        body = neutralise(body)
    files, left_out = _attachments_kept(decision.email)
    if not body.strip() and not files:
        _member_actions_finish(decision)
        return Result(
            Outcome.IGNORED,
            "quick actions only" if set(decision.trace) & QUICK_ACTION_KEYS else "empty reply",
            decision.trace,
            project=issue.project,
            issue=issue,
        )
    return NewNote(
        issue=issue,
        author=member,
        body=body,
        files=files,
        footnote=left_out,
        message_id=decision.email.message_id or "",
        notify=True,
    )


QUICK_ACTION_KEYS = {"quick_actions", "quick_actions_refused"}


def _member_actions_finish(decision: NoteFromEmail) -> None:
    """Run a member's ``/move`` once their comment is posted (it goes along to the copy), and
    record in the trace what their quick actions did and what was refused."""
    if decision.actions is None:
        return
    quick_actions_finish(decision.actions)
    if decision.actions.applied:
        decision.trace["quick_actions"] = decision.actions.applied
    if decision.actions.refused:
        decision.trace["quick_actions_refused"] = decision.actions.refused
    decision.actions = None


def _issues_after_moves(issue_ids: set[int]) -> dict[int, Issue]:
    """The issues by id, each replaced by the issue it was moved to (through every move)."""
    found = {i.pk: i for i in Issue.objects.select_related("project").filter(pk__in=issue_ids)}
    return {pk: _follow_moves(issue) for pk, issue in found.items()}


def _follow_moves(issue: Issue) -> Issue:
    seen = 0
    # A merged ticket continues in the one it was merged into, as a moved one in its copy.
    while seen < MAX_MOVE_HOPS:
        next_id = issue.moved_to_id or issue.merged_into_id
        if next_id is None:
            break
        issue = Issue.objects.select_related("project").get(pk=next_id)
        seen += 1
    return issue


def _reopen(issues: list[Issue], bot: User) -> None:
    """Closed issues a customer answered, where the project wants them reopened."""
    closed = {issue.pk: issue for issue in issues if issue.state == Issue.State.CLOSED}
    if not closed:
        return
    reopening = set(
        ServiceDeskSetting.objects.filter(
            project_id__in={i.project_id for i in closed.values()},
            reopen_issue_on_external_participant_note=True,
        ).values_list("project_id", flat=True)
    )
    for issue in closed.values():
        if issue.project_id not in reopening:
            continue
        issue_reopen(issue=issue, user=bot)
        mentions = " ".join(f"@{u.username}" for u in issue.assignees.all()) or "the team"
        notes_create(
            [
                NewNote(
                    issue=issue,
                    author=bot,
                    body=f"Reopened because the customer replied. {mentions}, please take a look.",
                    internal=True,
                )
            ]
        )


def _bounce(decision: Bounce, bot: User) -> Result:
    report, marked = decision.report, 0
    if report.permanent and report.reply_keys:
        participants = EmailParticipant.objects.filter(
            sent_notifications__reply_key__in=report.reply_keys
        ).select_related("issue")
        marked = participants_mark_bouncing(participants=participants, actor=bot)
    return Result(
        Outcome.IGNORED,
        f"delivery report ({'permanent' if report.permanent else 'temporary'} failure); "
        f"{marked} participant(s) marked bouncing",
        {
            **decision.trace,
            "rule": "delivery report",
            "reply_keys": [redact(k) for k in report.reply_keys],
        },
    )


def _unsubscribe(decision: Unsubscribe, bot: User) -> Result:
    participant = decision.sent.participant
    issue = _follow_moves(decision.sent.issue)
    if participant is None:
        return Result(Outcome.IGNORED, "participant already removed", decision.trace, issue=issue)
    participant_unsubscribe(participant=participant, actor=bot)
    return Result(
        Outcome.UNSUBSCRIBED,
        "",
        {**decision.trace, "rule": "unsubscribe key"},
        project=issue.project,
        issue=issue,
    )
