"""What the team hears about: recorded in the transaction of its cause, delivered after it.

``issues.services`` calls ``tickets_opened``, ``notes_posted``, ``assignees_added`` and
``state_changed`` when something happens on tickets; each records one ``Event`` row per thing
that happened (one INSERT for a whole batch of tickets) and queues its delivery on commit.
``events_deliver`` (a task; a beat sweeper catches what a lost task left) works out who hears
about each — GitLab's levels per person (a default and per-project overrides), the project's
new-ticket rule so that a new ticket always reaches someone, never the actor, never someone who
cannot read the issue — and writes their To-Dos and emails in bulk: a few statements per batch
of events whatever the number of people.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_lazy

from accounts.models import User
from issues.emails import (
    _Draft,
    _host,
    _one_line,
    _save,
    render_placeholders,
    send_after_commit,
)
from issues.markdown import render_markdown
from issues.models import Issue, Note, OutboundEmail, SentNotification
from issues.plaintext import html_to_plain_text
from projects.models import Membership, Project, Role
from projects.selectors import email_template_default
from servicedesk.queues import enqueue

from .models import DEFAULT_LEVEL, Event, Level, NewTicketRule, NotificationSetting, Todo

log = logging.getLogger(__name__)
Reason = str  # why someone hears about it: the X-ServiceDesk-NotificationReason header
ASSIGNED, MENTIONED, PARTICIPATING, NEW_TICKET, WATCHING, SNOOZED = (
    "assigned", "mentioned", "participating", "new_ticket", "watching", "snoozed",
)  # fmt: skip
_REASON_TEXT = {
    ASSIGNED: gettext_lazy("you are assigned to this ticket"),
    MENTIONED: gettext_lazy("you were mentioned"),
    PARTICIPATING: gettext_lazy("you take part in this ticket"),
    NEW_TICKET: gettext_lazy("you hear about this project's new and unassigned tickets"),
    WATCHING: gettext_lazy("you watch this project"),
    SNOOZED: gettext_lazy("you snoozed this ticket"),
}
# A member's @username in a comment or internal note (never in text that came by email).
_MENTION = re.compile(r"(?<![\w@/.-])@([A-Za-z0-9_][A-Za-z0-9_.-]{0,149})")


@dataclass
class _Team:
    """A project's members as notifications see them: one lookup per project and event."""

    project: Project
    roles: dict[int, int]
    users: dict[int, User]
    levels: dict[int, str]
    new_ticket_people: set[int]

    def reads(self, user_id: int, issue: Issue, *, internal: bool = False) -> bool:
        role = self.roles.get(user_id)
        if role is None or user_id not in self.users:
            return False
        return role >= Role.REPORTER or not (issue.confidential or internal)

    def level(self, user_id: int) -> str:
        return self.levels.get(user_id, DEFAULT_LEVEL)

    def watchers(self) -> set[int]:
        return {pk for pk in self.users if self.level(pk) == Level.WATCH}


def _team(project: Project) -> _Team:
    memberships = Membership.objects.filter(
        Q(project=project) | Q(group__full_path__in=project.ancestor_group_paths)
    )
    roles = dict(
        memberships.values("user_id").annotate(best=Max("role")).values_list("user_id", "best")
    )
    users = {
        u.pk: u
        for u in User.objects.filter(pk__in=roles, is_active=True, is_bot=False).exclude(email="")
    }
    levels: dict[int, str] = {}
    defaults: dict[int, str] = {}
    for user_id, project_id, level in NotificationSetting.objects.filter(
        Q(project=project) | Q(project=None), user_id__in=users
    ).values_list("user_id", "project_id", "level"):
        if level == Level.GLOBAL:
            continue
        (levels if project_id is not None else defaults)[user_id] = level
    effective = {pk: levels.get(pk) or defaults.get(pk) or DEFAULT_LEVEL for pk in users}
    rule = NewTicketRule.objects.filter(project=project).first()
    if rule is not None and rule.chosen_only:
        people = set(rule.people.values_list("pk", flat=True))
    else:
        people = {
            pk
            for pk, role in roles.items()
            if role >= Role.REPORTER
            and effective.get(pk) not in (None, Level.MENTION, Level.DISABLED)
        }
    return _Team(project, roles, users, effective, people & set(users))


@dataclass
class _Event:
    """One thing that happened on one issue, and who hears about it."""

    issue: Issue
    # the template: new_ticket, customer_reply, comment, assigned, state, response_soon/missed
    kind: str
    actor: User | None
    note: Note | None = None
    text: str = ""
    state: str = ""
    recipients: dict[int, Reason] = field(default_factory=dict)

    def add(self, user_ids: Iterable[int], reason: Reason) -> None:
        for pk in user_ids:
            self.recipients.setdefault(pk, reason)  # the first (strongest) reason wins


# --- Recording (in the cause's transaction) ----------------------------------------------------


def tickets_opened(issues: Sequence[Issue]) -> None:
    """New Service Desk tickets: the project's new-ticket people and its watchers hear about
    them; watchers get a To-Do."""
    _record([Event(kind=Event.Kind.NEW_TICKET, issue=issue) for issue in issues])


def notes_posted(notes: Sequence[Note]) -> None:
    """Customers' replies (from email) and team members' comments and internal notes."""
    _record(
        [
            Event(kind=Event.Kind.CUSTOMER_REPLY, issue=note.issue, note=note)
            if note.external_author
            else Event(kind=Event.Kind.COMMENT, issue=note.issue, note=note, actor=note.author)
            for note in notes
            if not note.system
        ]
    )


def assignees_added(issue: Issue, users: Sequence[User], actor: User) -> None:
    _record(
        [Event(kind=Event.Kind.ASSIGNED, issue=issue, actor=actor, users=[u.pk for u in users])]
    )


def state_changed(issue: Issue, actor: User) -> None:
    """Closed or reopened: those taking part and the watchers hear about it."""
    _record([Event(kind=Event.Kind.STATE, issue=issue, actor=actor, state=issue.state)])


def responses_due(*, soon: Sequence[Issue], missed: Sequence[Issue]) -> None:
    """Response targets about to be missed, and missed: the assignees hear about it, or, on an
    unassigned ticket, the watchers and the project's new-ticket people."""
    _record(
        [Event(kind=Event.Kind.RESPONSE_DUE, issue=issue, state="soon") for issue in soon]
        + [Event(kind=Event.Kind.RESPONSE_DUE, issue=issue, state="missed") for issue in missed]
    )


def snooze_ended(issue: Issue, *, snoozed_by: int | None, why: str) -> None:
    """A snoozed ticket woke up (its time came, or the customer replied): its assignees, or
    whoever snoozed it, get a To-Do and an email."""
    reason = "reply" if "replied" in why else "time"
    users = [snoozed_by] if snoozed_by is not None else []
    _record([Event(kind=Event.Kind.WOKE, issue=issue, state=reason, users=users)])


def _record(events: list[Event]) -> None:
    """One INSERT, and the delivery queued once it commits."""
    if not events:
        return
    Event.objects.bulk_create(events)
    ids = [event.pk for event in events]
    transaction.on_commit(lambda: enqueue("notifications.tasks.deliver_events", ids))


# --- Delivering (after the commit, in a task) ---------------------------------------------------

DELIVER_BATCH = 200  # events per transaction


def events_deliver(ids: Sequence[int] | None = None, *, older_than: float = 0) -> int:
    """Work out who hears about the events (``ids``, or every one still pending that is older
    than ``older_than`` seconds: the sweeper's), write their To-Dos and emails, and mark them
    delivered, in batches. Safe to run twice or concurrently: each batch claims its rows."""
    delivered = 0
    while True:
        with transaction.atomic():
            batch = _claim(ids, older_than)
            if not batch:
                return delivered
            _deliver_or_record_errors(batch)
        delivered += len(batch)
        if ids is not None and len(batch) < DELIVER_BATCH:
            return delivered


def _deliver_or_record_errors(batch: list[Event]) -> None:
    """The batch at once; if that fails, each event on its own, so that one event that cannot
    be delivered (a bug of ours) ends with its error recorded instead of blocking the rest."""
    now = timezone.now()
    try:
        with transaction.atomic():
            _deliver(batch)
    except Exception:
        log.exception("delivering %d team events failed; one by one", len(batch))
        for event in batch:
            try:
                with transaction.atomic():
                    _deliver([event])
            except Exception as exc:
                log.exception("team event %s could not be delivered", event.pk)
                event.error = f"{type(exc).__name__}: {exc}"[:1000]
                Event.objects.filter(pk=event.pk).update(error=event.error)
    Event.objects.filter(pk__in=[e.pk for e in batch]).update(delivered_at=now)


def _claim(ids: Sequence[int] | None, older_than: float) -> list[Event]:
    pending = Event.objects.filter(delivered_at=None)
    if ids is not None:
        pending = pending.filter(pk__in=ids)
    if older_than:
        pending = pending.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than))
    return list(
        pending.select_for_update(skip_locked=True, of=("self",))
        .select_related("issue__project", "note__author", "actor")
        .order_by("pk")[:DELIVER_BATCH]
    )


def _deliver(events: list[Event]) -> None:
    teams: dict[int, _Team] = {}
    todos: list[Todo] = []
    outgoing: list[_Event] = []
    issue_ids = {e.issue_id for e in events}
    taking_part, assignees = _taking_part(issue_ids), _assignees(issue_ids)
    for event in events:
        team = _team_of(event.issue.project, teams)
        people = _People(team, taking_part.get(event.issue_id, set()),
                         assignees.get(event.issue_id, set()))  # fmt: skip
        found, wanted = _WHO[Event.Kind(event.kind)](event, people)
        outgoing.append(found)
        todos += wanted
    _todos_add(todos)
    _send(outgoing, teams)


@dataclass
class _People:
    """Who is around an issue: its project's team, who takes part, who is assigned."""

    team: _Team
    taking_part: set[int]
    assigned: set[int]

    def participating(self) -> set[int]:
        return {
            pk for pk in self.taking_part | self.assigned
            if self.team.level(pk) in (Level.PARTICIPATING, Level.WATCH)
        }  # fmt: skip


def _new_ticket(event: Event, people: _People) -> tuple[_Event, list[Todo]]:
    team, issue = people.team, event.issue
    found = _Event(issue, "new_ticket", None, text=issue.description)
    found.add(team.new_ticket_people, NEW_TICKET)
    found.add(team.watchers(), WATCHING)
    todos = [
        Todo(user_id=pk, issue=issue, action=Todo.Action.NEW_TICKET)
        for pk in team.watchers()
        if team.reads(pk, issue)
    ]
    return found, todos


def _customer_reply(event: Event, people: _People) -> tuple[_Event, list[Todo]]:
    team, issue, note = people.team, event.issue, event.note
    assert note is not None
    found = _Event(issue, "customer_reply", None, note, note.body)
    found.add(people.assigned & _levels(team, Level.PARTICIPATING, Level.WATCH), ASSIGNED)
    if not people.assigned:  # held ones too: someone must look
        found.add(team.new_ticket_people, NEW_TICKET)
    found.add(people.participating(), PARTICIPATING)
    found.add(team.watchers(), WATCHING)
    todos = [
        Todo(user_id=pk, issue=issue, action=Todo.Action.CUSTOMER_REPLIED, note=note)
        for pk in people.assigned
        if team.reads(pk, issue)
    ]
    return found, todos


def _comment(event: Event, people: _People) -> tuple[_Event, list[Todo]]:
    team, issue, note = people.team, event.issue, event.note
    assert note is not None
    found = _Event(issue, "comment", note.author, note, note.body)
    mentioned = _mentioned(note, team)
    found.add(mentioned - _levels(team, Level.DISABLED), MENTIONED)
    found.add(people.participating(), PARTICIPATING)
    found.add(team.watchers(), WATCHING)
    todos = [
        Todo(user_id=pk, issue=issue, action=Todo.Action.MENTIONED, actor=note.author, note=note)
        for pk in mentioned
        if pk != note.author_id and team.reads(pk, issue, internal=note.internal)
    ]
    return found, todos


def _assigned(event: Event, people: _People) -> tuple[_Event, list[Todo]]:
    team, issue, actor = people.team, event.issue, event.actor
    added = set(event.users)
    found = _Event(issue, "assigned", actor, text=issue.description)
    found.add(added - _levels(team, Level.DISABLED), ASSIGNED)
    found.add(team.watchers(), WATCHING)
    todos = [
        Todo(user_id=pk, issue=issue, action=Todo.Action.ASSIGNED, actor=actor)
        for pk in added
        if (actor is None or pk != actor.pk) and team.reads(pk, issue)
    ]
    return found, todos


def _state(event: Event, people: _People) -> tuple[_Event, list[Todo]]:
    found = _Event(event.issue, "state", event.actor, state=event.state)
    found.add(people.participating(), PARTICIPATING)
    found.add(people.team.watchers(), WATCHING)
    return found, []


def _response_due(event: Event, people: _People) -> tuple[_Event, list[Todo]]:
    team, issue = people.team, event.issue
    found = _Event(issue, f"response_{event.state}", None, text=issue.description)
    if people.assigned:
        found.add(people.assigned, ASSIGNED)
    else:
        found.add(team.watchers(), WATCHING)
        found.add(team.new_ticket_people, NEW_TICKET)
    return found, []


def _woke(event: Event, people: _People) -> tuple[_Event, list[Todo]]:
    team, issue = people.team, event.issue
    found = _Event(issue, "woke", None, state=event.state)
    if people.assigned:
        found.add(people.assigned, ASSIGNED)
    else:
        found.add(set(event.users) & set(team.users), SNOOZED)
    todos = [
        Todo(user_id=pk, issue=issue, action=Todo.Action.SNOOZE_ENDED)
        for pk in found.recipients
        if team.reads(pk, issue)
    ]
    return found, todos


_WHO = {
    Event.Kind.NEW_TICKET: _new_ticket,
    Event.Kind.CUSTOMER_REPLY: _customer_reply,
    Event.Kind.COMMENT: _comment,
    Event.Kind.ASSIGNED: _assigned,
    Event.Kind.STATE: _state,
    Event.Kind.RESPONSE_DUE: _response_due,
    Event.Kind.WOKE: _woke,
}


def todos_done(*, user: User, issues: Iterable[Issue]) -> int:
    """Someone commented on or closed these tickets: their To-Dos there are done."""
    done = Todo.objects.filter(user=user, issue__in=list(issues), done_at=None).update(
        done_at=timezone.now()
    )
    if done:
        _recount({user.pk})
    return done


def _todos_add(todos: list[Todo]) -> None:
    Todo.objects.bulk_create(todos)
    _recount({todo.user_id for todo in todos})


def _recount(user_ids: set[int]) -> None:
    """Each person's pending To-Dos, counted again (one UPDATE): the header's number."""
    if not user_ids:
        return
    pending = (
        Todo.objects.filter(user=OuterRef("pk"), done_at=None)
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    User.objects.filter(pk__in=user_ids).update(
        todo_count=Coalesce(Subquery(pending[:1]), Value(0))
    )


# --- Who ----------------------------------------------------------------------------------------


def _team_of(project: Project, teams: dict[int, _Team]) -> _Team:
    if project.pk not in teams:
        teams[project.pk] = _team(project)
    return teams[project.pk]


def _levels(team: _Team, *levels: str) -> set[int]:
    return {pk for pk in team.users if team.level(pk) in levels}


def _taking_part(issue_ids: set[int]) -> dict[int, set[int]]:
    """Team members taking part in each issue: who commented (not a bot, not a system note)
    or was mentioned there."""
    found: dict[int, set[int]] = {}
    commenters = (
        Note.objects.filter(issue_id__in=issue_ids, system=False, author__is_bot=False)
        .values_list("issue_id", "author_id")
        .distinct()
    )
    mentioned = Todo.objects.filter(issue_id__in=issue_ids, action=Todo.Action.MENTIONED)
    for issue_id, user_id in [*commenters, *mentioned.values_list("issue_id", "user_id")]:
        found.setdefault(issue_id, set()).add(user_id)
    return found


def _assignees(issue_ids: set[int]) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    through = Issue.assignees.through
    for issue_id, user_id in through.objects.filter(issue_id__in=issue_ids).values_list(
        "issue_id", "user_id"
    ):
        found.setdefault(issue_id, set()).add(user_id)
    return found


def _mentioned(note: Note, team: _Team) -> set[int]:
    """Members named by @username in a team member's note (email text never gets here)."""
    names = {name.lower().rstrip(".") for name in _MENTION.findall(note.body)}
    if not names:
        return set()
    return {pk for pk, user in team.users.items() if user.username.lower() in names}


# --- Emails -------------------------------------------------------------------------------------

_SUBJECT_PREFIX = {
    "new_ticket": gettext_lazy("New ticket"),
    "customer_reply": gettext_lazy("Customer replied"),
    "comment": gettext_lazy("New comment"),
    "assigned": gettext_lazy("Assigned"),
    "state": gettext_lazy("Status"),
    "response_soon": gettext_lazy("Response due soon"),
    "response_missed": gettext_lazy("Response target missed"),
    "woke": gettext_lazy("Snooze ended"),
}


def _send(events: list[_Event], teams: dict[int, _Team]) -> None:
    """Every recipient of every event, one email each, recorded in bulk (two INSERTs)."""
    drafts = []
    for event in events:
        team = teams[event.issue.project_id]
        internal = bool(event.note and event.note.internal)
        wanted = [
            pk
            for pk in event.recipients
            if (event.actor is None or pk != event.actor.pk)
            and team.level(pk) != Level.DISABLED
            and team.reads(pk, event.issue, internal=internal)
        ]

        # Customer addresses are for Reporter+ only: below that, the customer is their name.
        # Each recipient reads it in their own language (their profile's).
        def variant(pk: int, team: _Team = team) -> tuple[bool, str]:
            return team.roles[pk] >= Role.REPORTER, team.users[pk].email_language

        bodies = {
            (sees, language): _render(event, addresses=sees, language=language)
            for sees, language in {variant(pk) for pk in wanted}
        }
        drafts += [
            _draft(event, team.users[pk], event.recipients[pk], bodies[variant(pk)])
            for pk in wanted
        ]
    send_after_commit(_save(drafts))


@dataclass(frozen=True)
class _Body:
    text: str
    html: str


def _render(event: _Event, *, addresses: bool, language: str) -> _Body:
    """One rendering per event and language (two when some recipients are below Reporter, who
    may not see customers' addresses): recipients differ only in headers and the reason line."""
    with translation.override(language):
        return _render_in(event, addresses=addresses, language=language)


def _render_in(event: _Event, *, addresses: bool, language: str) -> _Body:
    issue = event.issue
    template = email_template_default(f"team_{event.kind}", language)
    actor = event.actor.display_name if event.actor is not None else ""
    name, address = (
        (event.note.external_name, event.note.external_author)
        if event.note is not None
        else (issue.external_author_name, issue.external_author)
    )
    customer = name or (address if addresses else "")
    values = {
        "ACTOR": actor,
        "CUSTOMER": customer or gettext("The customer"),
        "ISSUE_ID": f"#{issue.iid}",
        "ISSUE_PATH": f"{issue.project.full_path}#{issue.iid}",
        "ISSUE_TITLE": issue.title,
        "ISSUE_URL": settings.SITE_URL
        + issue.get_absolute_url()
        + (f"#note-{event.note.pk}" if event.note is not None else ""),
        "STATE": gettext("closed") if event.state == Issue.State.CLOSED else gettext("reopened"),
        "WHY": gettext("the customer replied")
        if event.state == "reply"
        else gettext("the snooze time came"),
        "TEXT": event.text,
        "INTERNAL": gettext("an internal note")
        if event.note and event.note.internal
        else gettext("a comment"),
        "SETTINGS_URL": settings.SITE_URL + reverse("notification_settings"),
    }
    # The team's own text (a comment's Markdown) is rendered as written; the text part is
    # read from the HTML, as customers' emails' are.
    html = render_markdown(render_placeholders(template, values).strip(), remote_images=False)
    return _Body(html_to_plain_text(html), html)


def _thread_root(issue: Issue, user: User) -> str:
    """Per issue and per person: their client shows one conversation per ticket. Not
    guessable (it is derived from the issue's random thread token)."""
    digest = hashlib.sha256(f"{issue.thread_token}:{user.pk}".encode()).hexdigest()[:32]
    return f"<team-{digest}@{_host()}>"


def _draft(event: _Event, user: User, reason: Reason, body: _Body) -> _Draft:
    with translation.override(user.email_language):
        return _draft_in(event, user, reason, body)


def _draft_in(event: _Event, user: User, reason: Reason, body: _Body) -> _Draft:
    issue = event.issue
    sent = SentNotification(issue=issue, user=user, note=event.note, recipient=user.email)
    key = sent.reply_key
    root, own = _thread_root(issue, user), f"<reply-{key}@{_host()}>"
    project = issue.project
    reason_line = gettext("You get this email because %(reason)s.") % {
        "reason": _REASON_TEXT[reason]
    }
    headers = {
        "In-Reply-To": root,
        "References": f"{root} {own}",
        "List-Id": f"{_one_line(project.full_path)} <{project.full_path_slug}.{project.pk}."
        f"{_host()}>",
        "X-ServiceDesk-NotificationReason": reason,
        "X-ServiceDesk-Project": _one_line(project.full_path),
        "List-Unsubscribe": f"<{settings.SITE_URL}{reverse('notification_settings')}>",
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "All",
    }
    incoming = settings.SERVICEDESK_MAILBOXES.get("incoming_email")
    if incoming is not None and incoming.enabled:
        headers["Reply-To"] = incoming.address_for(key)
    prefix = _SUBJECT_PREFIX[event.kind]
    email = OutboundEmail(
        kind=OutboundEmail.Kind.TEAM,
        project_id=project.pk,
        issue=issue,
        note=event.note,
        user=user,
        sent_notification=sent,
        recipient=user.email,
        from_email=f"Service Desk <{settings.DEFAULT_FROM_EMAIL}>",
        subject=_one_line(f"[{project.full_path}] {prefix}: {issue.title} (#{issue.iid})"),
        message_id=own,
        headers=headers,
        body_text=f"{body.text}\n-- \n{reason_line}\n",
        body_html=f'{body.html}<hr><p class="reason">{reason_line}</p>',
    )
    return _Draft(sent, email, None)


# --- Settings and To-Dos ------------------------------------------------------------------------


def todo_done(*, user: User, todo_id: int) -> bool:
    done = Todo.objects.filter(pk=todo_id, user=user, done_at=None).update(done_at=timezone.now())
    _recount({user.pk})
    return bool(done)


def todos_all_done(*, user: User) -> int:
    done = Todo.objects.filter(user=user, done_at=None).update(done_at=timezone.now())
    _recount({user.pk})
    return done


def notification_level_set(*, user: User, level: str, project: Project | None = None) -> None:
    """The person's default level (no project; "use my default" is not one) or a project's."""
    if level not in Level.values or (project is None and level == Level.GLOBAL):
        raise ValueError(f"Not a notification level here: {level!r}")
    NotificationSetting.objects.update_or_create(
        user=user, project=project, defaults={"level": level}
    )


def new_ticket_rule_set(*, project: Project, chosen_only: bool, people: Sequence[User]) -> None:
    """Who hears about new and unassigned tickets: every Reporter+ (whose level lets them), or
    the chosen people — at least one, so that a new ticket always reaches someone."""
    if chosen_only and not people:
        raise ValueError("Choose at least one person, or let every Reporter hear about them.")
    rule, _ = NewTicketRule.objects.update_or_create(
        project=project, defaults={"chosen_only": chosen_only}
    )
    rule.people.set(people if chosen_only else [])
