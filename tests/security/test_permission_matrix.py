"""The permission matrix: every page, form action and download of the product x
{Owner, Maintainer, Developer, Reporter, Guest, outsider, anonymous} x {confidential, ordinary
issue} x {private, public project} x {plain request, htmx request, invalid form where the route
has them}, against the policy written out below — independently of projects/permissions.py,
which the views use.

The policy (SPEC §8, GitLab's roles):
- anonymous visitors are sent to the login page from every page that needs an account, whether
  it exists or not (no existence leak);
- a project is readable by its members, and by everyone when public (anonymous visitors
  included, as in GitLab); a confidential issue by Reporter+ only; what one cannot read is a 404;
- commenting: whoever is signed in and can read the issue; internal notes, closing, labels,
  assignees, confidentiality, participants, converting, moving: Reporter+ (403 for those who can
  read but not act);
- settings, description templates and the inbound ledger: Maintainer+; below that, members who
  know the page exists (Reporter+, or any member of a public project) get 403, others 404;
- the spam quarantine, the dashboard and a customer's page: Reporter+, 404 for everyone else;
- the members page: anyone signed in who can read the project (anonymous visitors are sent to
  the login page, even for a public project); changing members: Maintainer+, and only Owners
  make Owners;
- the instance-wide ledger: staff only, 404 for everyone else;
- an unsubscribe link: whoever holds it, no account needed;
- customer email addresses, and the project's Service Desk address, appear only for Reporter+;
- every answer is ``Cache-Control: private, no-store``.

Each cell checks, in a savepoint rolled back afterwards:
- refused: exactly that status (for anonymous visitors: the redirect to the login page), and
  the action did not happen;
- allowed: exactly the route's answer — 200 for a page, the redirect the action makes (its
  Location), 400 for an invalid form — and the action happened (or, for a 400, a preview or a
  confirmation page, that nothing changed);
- below Reporter: no customer address in any response (pages, files, denials, re-rendered
  forms, htmx fragments, answers to POSTs) nor in the page a redirect leads to — but for the
  unsubscribe page, which shows the customer their own.

A new URL that is not in ROUTES fails ``test_every_route_is_in_the_matrix``, and the number of
cells run is asserted: nothing ships outside the matrix, and no cell drops out of it silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.db import transaction
from django.http import HttpResponseBase
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import User
from accounts.services import EMAIL_CHANGE_SALT
from api.models import PersonalAccessToken
from api.services import token_create
from issues.models import EmailParticipant, Issue, Note, OutboundEmail, SentNotification
from issues.services import note_create, participant_add, upload_create
from mailroom.models import InboundMessage
from notifications.models import NewTicketRule, NotificationSetting, Todo
from projects.custom_email import custom_email_create
from projects.models import (
    CustomEmail,
    DescriptionTemplate,
    Group,
    Membership,
    Project,
    Role,
    ServiceDeskSetting,
    Visibility,
)
from projects.selectors import service_desk_addresses
from projects.services import membership_set
from saved_replies.models import SavedReply
from tests.factories import (
    GroupFactory,
    IssueFactory,
    LabelFactory,
    ProjectFactory,
    UserFactory,
    member,
)
from webhooks.models import Webhook, WebhookDelivery
from webhooks.services import webhook_save, webhook_test

pytestmark = pytest.mark.django_db
ROLES = ["owner", "maintainer", "developer", "reporter", "guest", "outsider", "anonymous"]
LEVEL = {"owner": 50, "maintainer": 40, "developer": 30, "reporter": 20, "guest": 10,
         "outsider": 0, "anonymous": -1}  # fmt: skip
CUSTOMER = "jake@customer.example"
STRANGER = "stranger@else.example"  # wrote a reply held back as an internal note
NEW_ADDRESS = "new@customer.example"  # what the forms post as a participant or requester
COMMENT = "A comment from the matrix"
HOOK_URL = "http://127.0.0.1:9/hook"  # the tests' setting allows 127.0.0.1


@dataclass
class World:
    visibility: str
    project: Any
    target: Any  # where issues are moved to: every persona with an account is its Owner
    issues: dict[bool, Issue]  # confidential? -> issue
    users: dict[str, Any]
    newcomer: Any  # a user who is no member yet, for "add a member"
    label: Any
    secrets: list[str]  # addresses nobody below Reporter may read
    ctx: dict[str, Any]


def build_world(visibility: str) -> World:
    group = GroupFactory(path=f"g-{visibility}")
    project = ProjectFactory(group=group, path="p", service_desk_enabled=True,
                             visibility=visibility)  # fmt: skip
    users = {role: member(project, Role[role.upper()], f"{role}-{visibility}")
             for role in ROLES[:5]}  # fmt: skip
    users["outsider"] = UserFactory(username=f"outsider-{visibility}")
    users["anonymous"] = None
    target = ProjectFactory(group=group, path="target", service_desk_enabled=True)
    for user in users.values():
        if user is not None:
            membership_set(user=user, project=target, role=Role.OWNER)
    issues = {}
    ctx: dict[str, Any] = {}
    for confidential in (True, False):
        issue = IssueFactory(project=project, author=users["owner"], confidential=confidential,
                             title=f"{'Secret' if confidential else 'Open'} issue",
                             external_author=CUSTOMER)  # fmt: skip
        participant, _ = participant_add(issue=issue, email=CUSTOMER)
        note = note_create(issue=issue, author=users["reporter"], body="internal", internal=True)
        # As the mailroom holds a key-less reply from a non-participant: internal.
        held = note_create(issue=issue, author=users["reporter"], body="From a stranger",
                           external_author=STRANGER, internal=True,
                           from_non_participant=True)  # fmt: skip
        ctx[confidential] = {
            "iid": issue.iid,
            "held_note_id": held.pk,
            "participant_id": participant.pk,
            "upload": upload_create(issue=issue, filename="a.txt", content=b"a",
                                    content_type="text/plain", uploaded_by=None),
            "internal_upload": upload_create(issue=issue, note=note, filename="b.txt",
                                             content=b"b", content_type="text/plain",
                                             uploaded_by=None),
        }  # fmt: skip
        issues[confidential] = issue
    ctx["membership_id"] = Membership.objects.get(project=project, user=users["guest"]).pk
    ctx["template_id"] = DescriptionTemplate.objects.create(
        project=project, name="Bug", content="Steps:"
    ).pk
    raw = f"From: {CUSTOMER}\r\nSubject: x\r\n\r\nx".encode()
    ctx["message_id"] = InboundMessage.objects.create(
        transport="test", raw=raw, size=len(raw), project=project, from_address=CUSTOMER,
        status="done", outcome="rejected", reason="empty email",
    ).pk  # fmt: skip
    raw = f"From: {CUSTOMER}\r\nSubject: cheap\r\n\r\nx".encode()
    ctx["spam_id"] = InboundMessage.objects.create(
        transport="test", raw=raw, size=len(raw), project=project, from_address=CUSTOMER,
        status="done", outcome="spam", reason="spam (spam)",
    ).pk  # fmt: skip
    sent = SentNotification.objects.create(
        issue=issues[True], participant=EmailParticipant.objects.get(issue=issues[True]),
        recipient=CUSTOMER,
    )  # fmt: skip
    ctx["unsubscribe_token"] = sent.unsubscribe_token
    ctx["survey_token"] = signing.dumps(
        {"i": issues[True].pk, "c": 1_700_000_000.0}, salt="satisfaction", compress=True
    )
    ctx["outbound_id"] = OutboundEmail.objects.create(
        kind=OutboundEmail.Kind.NEW_NOTE, project=project, issue=issues[True],
        sent_notification=sent, recipient=CUSTOMER, from_email="support@example.com",
        subject="Re: Secret issue", message_id=f"<matrix-{visibility}@example.com>",
        headers={"Reply-To": f"incoming+{sent.reply_key}@example.com"},
        body_text="Hello", body_html="", status=OutboundEmail.Status.FAILED,
        last_error="SMTPRecipientsRefused: 550 no such user",
    ).pk  # fmt: skip
    hook = webhook_save(project=project, url=HOOK_URL, secret="hook-secret", enabled=True,
                        verify_ssl=True, issue_events=True)  # fmt: skip
    ctx["hook_id"] = hook.pk
    ctx["delivery_id"] = webhook_test(hook=hook, user=users["owner"]).pk
    ctx["address_token"] = ServiceDeskSetting.objects.get(project=project).address_token
    return World(
        visibility=visibility,
        project=project,
        target=target,
        issues=issues,
        users=users,
        newcomer=UserFactory(username=f"newcomer-{visibility}"),
        label=LabelFactory(project=project, title="bug"),
        secrets=[CUSTOMER, STRANGER, *service_desk_addresses(project=project)],
        ctx=ctx,
    )


# --- The policy ---------------------------------------------------------------------------------
# Each returns 0 (allowed), 403 or 404 for (role level, visibility, confidential issue?).


def reads_project(level: int, visibility: str) -> bool:
    """Members; everyone (anonymous visitors included, as in GitLab) when public."""
    return level >= 10 or visibility == Visibility.PUBLIC


def reads_issue(level: int, visibility: str, confidential: bool) -> bool:
    return reads_project(level, visibility) and (not confidential or level >= 20)


def issue_action(minimum: int) -> Callable[[int, str, bool], int]:
    def expect(level: int, visibility: str, confidential: bool) -> int:
        if not reads_issue(level, visibility, confidential):
            return 404
        return 0 if level >= minimum else 403

    return expect


def project_triage(level: int, visibility: str, _confidential: bool) -> int:
    """The tracker's bulk edit: Reporter+ (403 for those who can read the project)."""
    if not reads_project(level, visibility):
        return 404
    return 0 if level >= 20 else 403


def project_admin(level: int, visibility: str, _confidential: bool) -> int:
    if level >= 40:
        return 0
    knows = level >= 20 or (level >= 10 and visibility == Visibility.PUBLIC)
    return 403 if knows else 404


def project_read(level: int, visibility: str, _confidential: bool) -> int:
    return 0 if reads_project(level, visibility) else 404


def members_read(level: int, visibility: str, _confidential: bool) -> int:
    """Signed-in readers of the project: the team's names are not for anonymous visitors."""
    return 0 if level >= 0 and reads_project(level, visibility) else 404


def members_change(level: int, visibility: str, _confidential: bool) -> int:
    if not reads_project(level, visibility):
        return 404
    return 0 if level >= 40 else 403


def owners_grant_owner(level: int, visibility: str, _confidential: bool) -> int:
    if not reads_project(level, visibility):
        return 404
    return 0 if level >= 50 else 403


def reporter_only(level: int, visibility: str, _confidential: bool) -> int:
    """Pages with customers' addresses and nothing for lower roles: 404 below Reporter."""
    return 0 if level >= 20 else 404


def staff_only(level: int, visibility: str, _confidential: bool) -> int:
    return 404  # none of the personas is staff; the staff check is in its own test


def signed_in(level: int, visibility: str, _confidential: bool) -> int:
    return 0 if level >= 0 else 404


def everyone(level: int, visibility: str, _confidential: bool) -> int:
    return 0


def own_todo(level: int, visibility: str, _confidential: bool) -> int:
    """A To-Do is its owner's (the reporter's here): 404 for everyone else."""
    return 0 if level == 20 else 404


def _internal_upload(level: int, visibility: str, confidential: bool) -> int:
    return 0 if reads_issue(level, visibility, confidential) and level >= 20 else 404


# --- What an allowed request answers ------------------------------------------------------------
# A status (200 page, 400 invalid form), or a function of the world (read after the request, so
# it can name what the request created) giving the status or the URL it must redirect to.

Answer = int | str  # a status, or the Location of a 302
Allowed = int | Callable[[World, bool], Answer]


def _issue_url(world: World, confidential: bool) -> str:
    return reverse("issue_detail", args=[world.project.full_path, world.ctx[confidential]["iid"]])


def to_issue(anchor: str = "") -> Callable[[World, bool], str]:
    return lambda w, c: _issue_url(w, c) + (f"#{anchor}" if anchor else "")


def to_project(name: str, *args: str) -> Callable[[World, bool], str]:
    return lambda w, c: reverse(name, args=[w.project.full_path, *args])


def to_hook(name: str) -> Callable[[World, bool], str]:
    return lambda w, c: reverse(name, args=[w.project.full_path, w.ctx["hook_id"]])


def to_new_note(world: World, confidential: bool) -> str:
    note = Note.objects.filter(issue=world.issues[confidential], body=COMMENT).order_by("pk").last()
    return f"{_issue_url(world, confidential)}#note-{note.pk if note else '(none)'}"


def to_held_note(world: World, confidential: bool) -> str:
    return f"{_issue_url(world, confidential)}#note-{world.ctx[confidential]['held_note_id']}"


def to_moved_copy(world: World, confidential: bool) -> str:
    copy = Issue.objects.get(pk=world.issues[confidential].pk).moved_to
    if copy is None:
        return "(the copy, which does not exist)"
    return reverse("issue_detail", args=[copy.project.full_path, copy.iid])


def confidentiality_answer(world: World, confidential: bool) -> Answer:
    # An issue that came by email in a public project stays confidential, whoever asks.
    if confidential and world.visibility == Visibility.PUBLIC:
        return 400
    return _issue_url(world, confidential)


# --- What a form action changes -----------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """``state`` reads what the action changes; ``after`` is its value once an allowed request
    did its work. Without ``after``, nothing may change whoever asks (previews, confirmations)."""

    state: Callable[[World, bool], object]
    after: Callable[[World, bool], object] | None = None


def _issue(world: World, confidential: bool) -> Issue:
    return Issue.objects.get(pk=world.issues[confidential].pk)


def _participant(world: World, confidential: bool) -> Any:
    return EmailParticipant.objects.filter(pk=world.ctx[confidential]["participant_id"]).first()


def _inbound(world: World, key: str) -> InboundMessage:
    return InboundMessage.objects.get(pk=world.ctx[key])


def _setting(world: World) -> ServiceDeskSetting:
    return ServiceDeskSetting.objects.get(project=world.project)


def _guest_role(world: World, _c: bool) -> int | None:
    membership = Membership.objects.filter(pk=world.ctx["membership_id"]).first()
    return membership.role if membership else None


def _templates(world: World, _c: bool) -> list[str]:
    return sorted(t.name for t in DescriptionTemplate.objects.filter(project=world.project))


def _participants(world: World, c: bool) -> list[str]:
    return sorted(p.email for p in EmailParticipant.objects.filter(issue=world.issues[c]))


def _newcomer_role(world: World, _c: bool) -> int | None:
    membership = Membership.objects.filter(project=world.project, user=world.newcomer).first()
    return membership.role if membership else None


def _issue_notes(world: World, confidential: bool) -> int:
    return Note.objects.filter(issue=world.issues[confidential]).count()


def _unsubscribed(world: World, _c: bool) -> bool:
    return EmailParticipant.objects.get(issue=world.issues[True]).unsubscribed_at is not None


def _comments(world: World, confidential: bool, **internal: bool) -> int:
    return Note.objects.filter(issue=world.issues[confidential], body=COMMENT, **internal).count()


NOTE_ADDED = Effect(_comments, lambda w, c: 1)
INTERNAL_NOTE_ADDED = Effect(lambda w, c: _comments(w, c, internal=True), lambda w, c: 1)
NOTHING_WRITTEN = Effect(_issue_notes)
CLOSED = Effect(lambda w, c: _issue(w, c).state, lambda w, c: Issue.State.CLOSED)
REOPENED = Effect(lambda w, c: _issue(w, c).state, lambda w, c: Issue.State.OPENED)
LABELLED = Effect(lambda w, c: sorted(_issue(w, c).labels.values_list("title", flat=True)),
                  lambda w, c: ["bug"])  # fmt: skip
ASSIGNED = Effect(
    lambda w, c: sorted(_issue(w, c).assignees.values_list("username", flat=True)),
    lambda w, c: [w.users["reporter"].username],
)
MERGED = Effect(lambda w, c: _issue(w, c).merged_into_id is not None, lambda w, c: True)
SNOOZED = Effect(lambda w, c: _issue(w, c).snoozed_at is not None, lambda w, c: True)
CONFIDENTIALITY_TOGGLED = Effect(
    lambda w, c: _issue(w, c).confidential,
    # Only a confidential Service Desk issue of a public project stays so (answered 400).
    lambda w, c: not c,
)
PARTICIPANT_ADDED = Effect(_participants, lambda w, c: sorted([CUSTOMER, NEW_ADDRESS]))
PARTICIPANT_REMOVED = Effect(lambda w, c: _participant(w, c) is not None, lambda w, c: False)
BOUNCING_CLEARED = Effect(lambda w, c: _participant(w, c).bouncing_at is not None,
                          lambda w, c: False)  # fmt: skip
HELD_NOTE_PUBLIC = Effect(
    lambda w, c: Note.objects.get(pk=w.ctx[c]["held_note_id"]).internal, lambda w, c: False
)
CONVERTED = Effect(lambda w, c: _issue(w, c).external_author, lambda w, c: NEW_ADDRESS)
MOVED = Effect(
    lambda w, c: (m := _issue(w, c).moved_to) and m.project.full_path,
    lambda w, c: w.target.full_path,
)
SETTINGS_SAVED = Effect(lambda w, c: _setting(w).outgoing_name, lambda w, c: "Help desk")
SETTINGS_UNCHANGED = Effect(lambda w, c: _setting(w).outgoing_name)
ADDRESS_REGENERATED = Effect(lambda w, c: _setting(w).address_token != w.ctx["address_token"],
                             lambda w, c: True)  # fmt: skip
ADDRESS_KEPT = Effect(lambda w, c: _setting(w).address_token)
THANK_YOU_TEXT = "Thanks! %{ISSUE_ID}"
EMAIL_TEMPLATE_SAVED = Effect(lambda w, c: _setting(w).thank_you_template,
                              lambda w, c: THANK_YOU_TEXT)  # fmt: skip
EMAIL_TEMPLATE_RESET = Effect(lambda w, c: _setting(w).thank_you_template, lambda w, c: "")
EMAIL_TEMPLATE_KEPT = Effect(lambda w, c: _setting(w).thank_you_template)
TEMPLATE_CREATED = Effect(_templates, lambda w, c: ["Bug", "Question"])
TEMPLATE_RENAMED = Effect(_templates, lambda w, c: ["Bug report"])
TEMPLATE_DELETED = Effect(_templates, lambda w, c: [])
TEMPLATES_KEPT = Effect(_templates)
MEMBER_ADDED = Effect(_newcomer_role, lambda w, c: Role.REPORTER)
OWNER_ADDED = Effect(_newcomer_role, lambda w, c: Role.OWNER)
MEMBER_ROLE_CHANGED = Effect(_guest_role, lambda w, c: Role.REPORTER)
MEMBER_REMOVED = Effect(_guest_role, lambda w, c: None)
MEMBERS_KEPT = Effect(_guest_role)
RETRIED = Effect(lambda w, c: OutboundEmail.objects.get(pk=w.ctx["outbound_id"]).status,
                 lambda w, c: OutboundEmail.Status.PENDING)  # fmt: skip
REQUEUED = Effect(lambda w, c: _inbound(w, "message_id").status,
                  lambda w, c: InboundMessage.Status.QUEUED)  # fmt: skip
RELEASED = Effect(lambda w, c: _inbound(w, "spam_id").spam_released, lambda w, c: True)
SPAM_CONFIRMED = Effect(lambda w, c: _inbound(w, "spam_id").spam_reviewed_at is not None,
                        lambda w, c: True)  # fmt: skip


def _hook_urls(world: World, _c: bool) -> list[str]:
    return sorted(Webhook.objects.filter(project=world.project).values_list("url", flat=True))


def _deliveries(world: World, _c: bool) -> int:
    return WebhookDelivery.objects.filter(hook__project=world.project).count()


def _targets_on(world: World, _c: bool) -> bool:
    from sla.models import ResponsePolicy

    return ResponsePolicy.objects.filter(project=world.project, enabled=True).exists()


TARGETS_ON = Effect(_targets_on, lambda w, c: True)
TARGETS_FORM = {
    "action": "save", "enabled": "on", "first_response_minutes": "4h",
    "next_response_minutes": "8h", "warn_minutes": "30m", "time_zone": "Europe/Berlin",
    "weekly_hours": "Mon-Fri 09:00-17:00", "holidays": "",
}  # fmt: skip


HOOK_ADDED = Effect(_hook_urls, lambda w, c: sorted([HOOK_URL, HOOK_URL + "/new"]))
HOOK_SAVED = Effect(_hook_urls, lambda w, c: [HOOK_URL + "/edited"])
HOOK_DELETED = Effect(_hook_urls, lambda w, c: [])
HOOK_SENT = Effect(_deliveries, lambda w, c: 2)
UNSUBSCRIBED = Effect(_unsubscribed, lambda w, c: True)


def _rated(world: World, _c: bool) -> bool:
    from satisfaction.models import Rating

    return Rating.objects.filter(issue=world.issues[True]).exists()


RATED = Effect(_rated, lambda w, c: True)
NOT_RATED = Effect(_rated)
STILL_SUBSCRIBED = Effect(_unsubscribed)


CUSTOM_ADDRESS = "support@matrix.example"
CUSTOM_PASSWORD = "matrix-smtp-password"  # must never be shown, not even to Owners
CUSTOM_FORM = {
    "address": CUSTOM_ADDRESS, "smtp_host": "smtp.matrix.example", "smtp_port": "587",
    "smtp_username": "support", "smtp_password": CUSTOM_PASSWORD, "smtp_authentication": "auto",
}  # fmt: skip


def _custom_email(world: World, _c: bool) -> tuple[str, bool] | None:
    custom = CustomEmail.objects.filter(project=world.project).first()
    return (custom.state, custom.enabled) if custom else None


def _with_custom_email(state: str) -> Callable[[World, bool], None]:
    def setup(world: World, _confidential: bool) -> None:
        custom = custom_email_create(
            project=world.project, actor=world.users["owner"],
            **{k: v for k, v in CUSTOM_FORM.items() if k != "smtp_port"}, smtp_port=587,
        )  # fmt: skip
        CustomEmail.objects.filter(pk=custom.pk).update(state=state)

    return setup


CUSTOM_EMAIL_SAVED = Effect(_custom_email, lambda w, c: ("started", False))
CUSTOM_EMAIL_RETRIED = Effect(_custom_email, lambda w, c: ("started", False))
CUSTOM_EMAIL_ENABLED = Effect(_custom_email, lambda w, c: ("verified", True))
CUSTOM_EMAIL_DELETED = Effect(_custom_email, lambda w, c: None)


def _close(world: World, confidential: bool) -> None:
    Issue.objects.filter(pk=world.issues[confidential].pk).update(
        state=Issue.State.CLOSED, closed_at=timezone.now()
    )


def _mark_bouncing(world: World, confidential: bool) -> None:
    EmailParticipant.objects.filter(pk=world.ctx[confidential]["participant_id"]).update(
        bouncing_at=timezone.now()
    )


def _customise_thank_you(world: World, _confidential: bool) -> None:
    ServiceDeskSetting.objects.filter(project=world.project).update(thank_you_template="Thanks")


def _todo_each(world: World, confidential: bool) -> None:
    """One pending To-Do for every persona with an account (the reporter's is ctx["todo"])."""
    for role, user in world.users.items():
        if user is not None:
            todo = Todo.objects.create(user=user, issue=world.issues[False], action="assigned")
            if role == "reporter":
                world.ctx["todo"] = todo.pk


def _saved_reply_each(world: World, _confidential: bool) -> None:
    """The project's saved reply (ctx["project_reply"]) and the reporter's own
    (ctx["own_reply"])."""
    world.ctx["project_reply"] = SavedReply.objects.create(
        project=world.project, name="Refund", content="Hi %{CUSTOMER_NAME}"
    ).pk
    world.ctx["own_reply"] = SavedReply.objects.create(
        user=world.users["reporter"], name="Mine", content="Thanks"
    ).pk


def _reply_named(name: str) -> Callable[[World, bool], bool]:
    return lambda w, c: SavedReply.objects.filter(name=name).exists()


def own_reply(level: int, visibility: str, _confidential: bool) -> int:
    """A saved reply of one's own is its owner's (the reporter's here): 404 for others."""
    return 0 if level == 20 else 404


def _token_each(world: World, _confidential: bool) -> None:
    """A token for every persona with an account (the reporter's is ctx["token"])."""
    for role, user in world.users.items():
        if user is not None:
            new = token_create(user=user, name=f"{role} token", scopes=["api"],
                               expires_at=timezone.now().date() + timedelta(days=7))  # fmt: skip
            if role == "reporter":
                world.ctx["token"] = new.token.pk


def _in_a_month() -> str:
    return (timezone.now().date() + timedelta(days=30)).isoformat()


def _tokens_named(name: str) -> Callable[[World, bool], int]:
    return lambda w, c: PersonalAccessToken.objects.filter(name=name).count()


def own_token(level: int, visibility: str, _confidential: bool) -> int:
    """A personal access token is its owner's (the reporter's here): 404 for others."""
    return 0 if level == 20 else 404


def _pending_todos(world: World, _c: bool) -> int:
    return Todo.objects.filter(done_at=None).count()


def _make_ordinary(world: World, confidential: bool) -> None:
    """Only an issue that did not come by email can be converted."""
    Issue.objects.filter(pk=world.issues[confidential].pk).update(external_author="")


def group_admin(level: int, visibility: str, _confidential: bool) -> int:
    """New projects and subgroups in a group (``_group_roles`` gives each persona its role
    there too): Maintainer+; other members 403; outsiders 404."""
    if level >= 40:
        return 0
    return 403 if level >= 10 else 404


def nobody(level: int, visibility: str, _confidential: bool) -> int:
    """Sign-up while it is off (the default): 404 (anonymous visitors: the sign-in page)."""
    return 404


def _group_roles(world: World, _c: bool) -> None:
    for role, user in world.users.items():
        if user is not None and LEVEL[role] >= 10:
            membership_set(user=user, group=world.project.group, role=Role(LEVEL[role]))


def _instance_template(world: World, _c: bool) -> None:
    world.ctx["instance_template"] = DescriptionTemplate.objects.create(
        name="Instance", content="Thanks"
    ).pk


def _email_token(world: World, _c: bool) -> None:
    owner = world.users["owner"]
    world.ctx["email_token"] = signing.dumps(
        [owner.pk, owner.email, NEW_OWNER_EMAIL], salt=EMAIL_CHANGE_SALT
    )


NEW_OWNER_EMAIL = "owner-new@matrix.example"
INVITEE = "invitee@matrix.example"


def _account_emails_to(address: str) -> Callable[[World, bool], int]:
    return lambda w, c: OutboundEmail.objects.filter(kind="account", recipient=address).count()


def _uid(world: World, _c: bool) -> str:
    return urlsafe_base64_encode(force_bytes(world.users["owner"].pk))


def _new_in_group(name: str, path: str) -> Callable[[World, bool], str]:
    def url(world: World, _c: bool) -> str:
        full_path = f"{world.project.group.full_path}/{path}"
        if name == "project_new":
            return reverse("service_desk_settings", args=[full_path])
        group = Group.objects.filter(full_path=full_path).first()
        return f"{reverse('project_new')}?group={group.pk if group else '(none)'}"

    return url


# --- Routes -------------------------------------------------------------------------------------

Data = dict[str, Any] | Callable[[World, bool], dict[str, Any]] | None


@dataclass(frozen=True)
class Variant:
    """One more way to send a route's request: htmx headers, or an invalid form."""

    name: str = "plain"
    headers: dict[str, str] = field(default_factory=dict)
    data: Data = None  # replaces the route's form data
    allowed: Allowed | None = None  # replaces the route's answer


PLAIN = Variant()
HTMX = Variant("htmx", {"HX-Request": "true"})
# htmx restoring a page from history after a cache miss, and a boosted link: whole pages.
HTMX_RESTORE = Variant("htmx restore", {"HX-Request": "true", "HX-History-Restore-Request": "true"})
HTMX_BOOSTED = Variant("htmx boosted", {"HX-Request": "true", "HX-Boosted": "true"})


def invalid(data: dict[str, Any]) -> Variant:
    return Variant("invalid form", data=data, allowed=400)


@dataclass
class Route:
    method: str
    url: Callable[[World, bool], str]
    expect: Callable[[int, str, bool], int]
    allowed: Allowed = 200
    per_issue: bool = True  # confidential and ordinary issue both checked
    data: Data = None
    effect: Effect | None = None
    setup: Callable[[World, bool], None] | None = None  # runs inside the cell's savepoint
    variants: tuple[Variant, ...] = (PLAIN,)
    shows_own_address: bool = False  # the page is for the customer (their own address is fine)


def _issue_page(name: str, *extra: str) -> Callable[[World, bool], str]:
    def url(world: World, confidential: bool) -> str:
        c = world.ctx[confidential]
        args = [world.project.full_path, c["iid"], *(c[e] for e in extra)]
        return reverse(name, args=args)

    return url


def _project(name: str, *extra: str) -> Callable[[World, bool], str]:
    def url(world: World, _confidential: bool) -> str:
        return reverse(name, args=[world.project.full_path, *(world.ctx[e] for e in extra)])

    return url


def _global(name: str, *extra: str) -> Callable[[World, bool], str]:
    return lambda world, _c: reverse(name, args=[world.ctx[e] for e in extra])


def _upload(key: str) -> Callable[[World, bool], str]:
    def url(world: World, confidential: bool) -> str:
        upload = world.ctx[confidential][key]
        return reverse("upload", args=[upload.pk, upload.filename])

    return url


def _customer_page(world: World, _confidential: bool) -> str:
    return f"{reverse('customer_detail')}?{urlencode({'email': CUSTOMER})}"


def _settings_page(name: str) -> Callable[[World, bool], str]:
    return lambda w, c: reverse(name, args=[w.project.full_path, "thank_you"])


def _project_route(method: str, url: Callable[[World, bool], str],
                   expect: Callable[[int, str, bool], int], **kwargs: Any) -> Route:  # fmt: skip
    return Route(method, url, expect, per_issue=False, **kwargs)


SETTINGS = "service_desk_settings"
TEMPLATES = "description_template_list"
MEMBERS = "project_members"

# A table, one route per entry: kept as written.
# fmt: off
ROUTES: dict[str, Route] = {
    "home": _project_route("GET", lambda w, c: reverse("home"), signed_in),
    "project_detail": _project_route(
        "GET", _project("project_detail"), project_read, allowed=to_project("issue_list")
    ),
    "issue_list": _project_route(
        "GET", _project("issue_list"), project_read, variants=(PLAIN, HTMX, HTMX_RESTORE)
    ),
    # Bulk edit: the issue by number, or every open one (the list's default filters).
    "issue_bulk": Route(
        "POST", _project("issue_bulk"), project_triage, allowed=to_project("issue_list"),
        data=lambda w, c: {"action": "close", "iid": [w.ctx[c]["iid"]]}, effect=CLOSED,
        variants=(PLAIN, Variant("all matching", data={"action": "close", "scope": "all"})),
    ),
    "issue_detail": Route("GET", _issue_page("issue_detail"), issue_action(-1)),
    "note_add": Route(
        "POST", _issue_page("note_add"), issue_action(0), allowed=to_new_note,
        data={"body": COMMENT}, effect=NOTE_ADDED, variants=(PLAIN, invalid({"body": ""})),
    ),
    "note_add (internal note)": Route(
        "POST", _issue_page("note_add"), issue_action(20), allowed=to_new_note,
        data={"body": COMMENT, "internal": "on"}, effect=INTERNAL_NOTE_ADDED,
    ),
    "note_preview": Route(
        "POST", _issue_page("note_preview"), issue_action(0), data={"body": "*x*"},
        effect=NOTHING_WRITTEN, variants=(PLAIN, HTMX),
    ),
    # The presence bar's heartbeat: the team (Reporter+) only; it writes to the cache alone.
    "issue_presence": Route(
        "POST", _issue_page("issue_presence"), issue_action(20), data={"writing": "reply"},
        effect=NOTHING_WRITTEN, variants=(PLAIN, HTMX),
    ),
    "issue_close": Route(
        "POST", _issue_page("issue_close"), issue_action(20), allowed=to_issue(), effect=CLOSED
    ),
    "issue_reopen": Route(
        "POST", _issue_page("issue_reopen"), issue_action(20), allowed=to_issue(),
        effect=REOPENED, setup=_close,
    ),
    "issue_labels": Route(
        "POST", _issue_page("issue_labels"), issue_action(20), allowed=to_issue(),
        data=lambda w, c: {"labels": [w.label.pk]}, effect=LABELLED,
    ),
    "issue_assignees": Route(
        "POST", _issue_page("issue_assignees"), issue_action(20), allowed=to_issue(),
        data=lambda w, c: {"assignees": [w.users["reporter"].pk]}, effect=ASSIGNED,
    ),
    "issue_confidentiality": Route(
        "POST", _issue_page("issue_confidentiality"), issue_action(20),
        allowed=confidentiality_answer, data=lambda w, c: {"confidential": str(not c).lower()},
        effect=CONFIDENTIALITY_TOGGLED,
    ),
    "issue_snooze": Route(
        "POST", _issue_page("issue_snooze"), issue_action(20), allowed=to_issue(),
        data={"until": "3d"}, effect=SNOOZED,
    ),
    "issue_merge": Route(
        "POST", _issue_page("issue_merge"), issue_action(20),
        allowed=lambda w, c: reverse(
            "issue_detail", args=[w.project.full_path, w.issues[not c].iid]
        ),
        data=lambda w, c: {"target": f"#{w.issues[not c].iid}"}, effect=MERGED,
    ),
    "participant_add": Route(
        "POST", _issue_page("participant_add"), issue_action(20),
        allowed=to_issue("participants"), data={"email": NEW_ADDRESS}, effect=PARTICIPANT_ADDED,
    ),
    "participant_remove": Route(
        "POST", _issue_page("participant_remove", "participant_id"), issue_action(20),
        allowed=to_issue("participants"), effect=PARTICIPANT_REMOVED,
    ),
    "participant_bouncing_clear": Route(
        "POST", _issue_page("participant_bouncing_clear", "participant_id"), issue_action(20),
        allowed=to_issue("participants"), effect=BOUNCING_CLEARED, setup=_mark_bouncing,
    ),
    "note_make_public": Route(
        "POST", _issue_page("note_make_public", "held_note_id"), issue_action(20),
        allowed=to_held_note, effect=HELD_NOTE_PUBLIC,
    ),
    "issue_convert": Route(
        "POST", _issue_page("issue_convert"), issue_action(20), allowed=to_issue(),
        data={"email": NEW_ADDRESS}, effect=CONVERTED, setup=_make_ordinary,
    ),
    "issue_move": Route(
        "POST", _issue_page("issue_move"), issue_action(20), allowed=to_moved_copy,
        data=lambda w, c: {"project": w.target.pk}, effect=MOVED,
    ),
    "upload": Route("GET", _upload("upload"), issue_action(-1)),
    "upload (internal note)": Route("GET", _upload("internal_upload"), _internal_upload),
    "service_desk_settings": _project_route("GET", _project(SETTINGS), project_admin),
    "service_desk_settings (save)": _project_route(
        "POST", _project(SETTINGS), project_admin, allowed=to_project(SETTINGS),
        data={"service_desk_enabled": "on", "outgoing_name": "Help desk"},
        effect=SETTINGS_SAVED,
        variants=(PLAIN, invalid({"service_desk_enabled": "on", "project_key": "Not a key!",
                                  "outgoing_name": "Help desk"})),
    ),
    "service_desk_regenerate": _project_route(
        "POST", _project("service_desk_regenerate"), project_admin, allowed=to_project(SETTINGS),
        effect=ADDRESS_REGENERATED,
    ),
    "service_desk_regenerate (confirmation)": _project_route(
        "GET", _project("service_desk_regenerate"), project_admin, effect=ADDRESS_KEPT
    ),
    "service_desk_custom_email": _project_route(
        "GET", _project("service_desk_custom_email"), project_admin, variants=(PLAIN, HTMX),
        setup=_with_custom_email("started"), effect=Effect(_custom_email),
    ),
    "service_desk_custom_email (save)": _project_route(
        "POST", _project("service_desk_custom_email"), project_admin,
        allowed=to_project("service_desk_custom_email"), data=CUSTOM_FORM,
        effect=CUSTOM_EMAIL_SAVED,
        variants=(PLAIN, invalid({**CUSTOM_FORM, "smtp_password": "short"})),
    ),
    "service_desk_custom_email_retry": _project_route(
        "POST", _project("service_desk_custom_email_retry"), project_admin,
        allowed=to_project("service_desk_custom_email"), setup=_with_custom_email("failed"),
        effect=CUSTOM_EMAIL_RETRIED,
    ),
    "service_desk_custom_email_enable": _project_route(
        "POST", _project("service_desk_custom_email_enable"), project_admin,
        allowed=to_project("service_desk_custom_email"), data={"enabled": "on"},
        setup=_with_custom_email("verified"), effect=CUSTOM_EMAIL_ENABLED,
    ),
    "service_desk_custom_email_reset": _project_route(
        "POST", _project("service_desk_custom_email_reset"), project_admin,
        allowed=to_project("service_desk_custom_email"), setup=_with_custom_email("verified"),
        effect=CUSTOM_EMAIL_DELETED,
    ),
    "service_desk_email_template": _project_route(
        "GET", _settings_page("service_desk_email_template"), project_admin
    ),
    "service_desk_email_template (save)": _project_route(
        "POST", _settings_page("service_desk_email_template"), project_admin,
        allowed=to_project("service_desk_email_template", "thank_you"),
        data={"text": THANK_YOU_TEXT}, effect=EMAIL_TEMPLATE_SAVED,
    ),
    "service_desk_email_template (reset)": _project_route(
        "POST", _settings_page("service_desk_email_template"), project_admin,
        allowed=to_project("service_desk_email_template", "thank_you"),
        data={"reset": "1"}, effect=EMAIL_TEMPLATE_RESET, setup=_customise_thank_you,
    ),
    "service_desk_email_preview": _project_route(
        "POST", _settings_page("service_desk_email_preview"), project_admin,
        data={"text": "Hello %{ISSUE_ID}"}, effect=EMAIL_TEMPLATE_KEPT, variants=(PLAIN, HTMX),
    ),
    "description_template_list": _project_route("GET", _project(TEMPLATES), project_admin),
    "description_template_new": _project_route(
        "GET", _project("description_template_new"), project_admin
    ),
    "description_template_new (create)": _project_route(
        "POST", _project("description_template_new"), project_admin,
        allowed=to_project(TEMPLATES), data={"name": "Question", "content": "Ask:"},
        effect=TEMPLATE_CREATED, variants=(PLAIN, invalid({"name": "", "content": "Ask:"})),
    ),
    "description_template_edit": _project_route(
        "GET", _project("description_template_edit", "template_id"), project_admin
    ),
    "description_template_edit (save)": _project_route(
        "POST", _project("description_template_edit", "template_id"), project_admin,
        allowed=to_project(TEMPLATES), data={"name": "Bug report", "content": "Steps:"},
        effect=TEMPLATE_RENAMED,
    ),
    "description_template_delete": _project_route(
        "POST", _project("description_template_delete", "template_id"), project_admin,
        allowed=to_project(TEMPLATES), effect=TEMPLATE_DELETED,
    ),
    "description_template_delete (confirmation)": _project_route(
        "GET", _project("description_template_delete", "template_id"), project_admin,
        effect=TEMPLATES_KEPT,
    ),
    "project_members": _project_route("GET", _project(MEMBERS), members_read),
    "project_members (add)": _project_route(
        "POST", _project(MEMBERS), members_change, allowed=to_project(MEMBERS),
        data=lambda w, c: {"username": w.newcomer.username, "role": Role.REPORTER},
        effect=MEMBER_ADDED,
        variants=(PLAIN, invalid({"username": "nobody-by-that-name", "role": Role.REPORTER})),
    ),
    "project_members (add an Owner)": _project_route(
        "POST", _project(MEMBERS), owners_grant_owner, allowed=to_project(MEMBERS),
        data=lambda w, c: {"username": w.newcomer.username, "role": Role.OWNER},
        effect=OWNER_ADDED,
    ),
    "project_member_update": _project_route(
        "POST", _project("project_member_update", "membership_id"), members_change,
        allowed=to_project(MEMBERS), data={"role": Role.REPORTER}, effect=MEMBER_ROLE_CHANGED,
        variants=(PLAIN, invalid({"role": "7"})),
    ),
    "project_member_remove": _project_route(
        "POST", _project("project_member_remove", "membership_id"), members_change,
        allowed=to_project(MEMBERS), effect=MEMBER_REMOVED,
    ),
    "project_inbound_list": _project_route(
        "GET", _project("project_inbound_list"), project_admin,
        variants=(PLAIN, HTMX, HTMX_BOOSTED, HTMX_RESTORE),
    ),
    "project_inbound_detail": _project_route(
        "GET", _project("project_inbound_detail", "message_id"), project_admin
    ),
    "project_inbound_raw": _project_route(
        "GET", _project("project_inbound_raw", "message_id"), project_admin
    ),
    "project_inbound_reprocess": _project_route(
        "POST", _project("project_inbound_reprocess", "message_id"), project_admin,
        allowed=lambda w, c: reverse("project_inbound_detail",
                                     args=[w.project.full_path, w.ctx["message_id"]]),
        effect=REQUEUED,
    ),
    "instance_inbound_list": _project_route(
        "GET", _global("instance_inbound_list"), staff_only, variants=(PLAIN, HTMX)
    ),
    "instance_inbound_detail": _project_route(
        "GET", _global("instance_inbound_detail", "message_id"), staff_only
    ),
    "instance_inbound_raw": _project_route(
        "GET", _global("instance_inbound_raw", "message_id"), staff_only
    ),
    "instance_inbound_reprocess": _project_route(
        "POST", _global("instance_inbound_reprocess", "message_id"), staff_only, effect=REQUEUED
    ),
    "project_outbound_list": _project_route(
        "GET", _project("project_outbound_list"), project_admin, variants=(PLAIN, HTMX)
    ),
    "project_outbound_detail": _project_route(
        "GET", _project("project_outbound_detail", "outbound_id"), project_admin
    ),
    "project_outbound_retry": _project_route(
        "POST", _project("project_outbound_retry", "outbound_id"), project_admin,
        allowed=lambda w, c: reverse("project_outbound_detail",
                                     args=[w.project.full_path, w.ctx["outbound_id"]]),
        effect=RETRIED,
    ),
    "instance_outbound_list": _project_route(
        "GET", _global("instance_outbound_list"), staff_only, variants=(PLAIN, HTMX)
    ),
    "instance_outbound_detail": _project_route(
        "GET", _global("instance_outbound_detail", "outbound_id"), staff_only
    ),
    "instance_outbound_retry": _project_route(
        "POST", _global("instance_outbound_retry", "outbound_id"), staff_only, effect=RETRIED
    ),
    "project_dashboard": _project_route("GET", _project("project_dashboard"), reporter_only),
    # The customer's issues in the projects where the viewer is Reporter+ (every persona with
    # an account is Owner of ``target``, where the customer never wrote: no way in from there).
    "customer_detail": _project_route("GET", _customer_page, reporter_only),
    "spam_list": _project_route("GET", _project("spam_list"), reporter_only),
    "spam_not_spam": _project_route(
        "POST", _project("spam_not_spam", "spam_id"), reporter_only,
        allowed=to_project("spam_list"), effect=RELEASED,
    ),
    "spam_delete": _project_route(
        "POST", _project("spam_delete", "spam_id"), reporter_only,
        allowed=to_project("spam_list"), effect=SPAM_CONFIRMED,
    ),
    "todos": _project_route("GET", lambda w, c: reverse("todos"), signed_in),
    "todo_done": _project_route(
        "POST", lambda w, c: reverse("todo_done", args=[w.ctx["todo"]]), own_todo,
        allowed=lambda w, c: reverse("todos"), setup=_todo_each,
        effect=Effect(_pending_todos, lambda w, c: len([u for u in w.users.values() if u]) - 1),
    ),
    "todos_done": _project_route(
        "POST", lambda w, c: reverse("todos_done"), signed_in,
        allowed=lambda w, c: reverse("todos"), setup=_todo_each,
        effect=Effect(_pending_todos, lambda w, c: len([u for u in w.users.values() if u]) - 1),
    ),
    "notification_settings": _project_route(
        "GET", lambda w, c: reverse("notification_settings"), signed_in
    ),
    "notification_settings (save)": _project_route(
        "POST", lambda w, c: reverse("notification_settings"), signed_in,
        allowed=lambda w, c: reverse("notification_settings"), data={"default": "watch"},
        effect=Effect(
            lambda w, c: NotificationSetting.objects.filter(project=None, level="watch").count(),
            lambda w, c: 1,
        ),
    ),
    "project_notifications": _project_route(
        "GET", _project("project_notifications"), project_admin
    ),
    "project_notifications (save)": _project_route(
        "POST", _project("project_notifications"), project_admin,
        allowed=to_project("project_notifications"),
        data=lambda w, c: {"chosen_only": "true", "people": [w.users["owner"].pk]},
        effect=Effect(
            lambda w, c: NewTicketRule.objects.filter(project=w.project, chosen_only=True).exists(),
            lambda w, c: True,
        ),
        variants=(PLAIN, invalid({"chosen_only": "true"})),
    ),
    "saved_replies": _project_route("GET", lambda w, c: reverse("saved_replies"), signed_in),
    "saved_replies (create)": _project_route(
        "POST", lambda w, c: reverse("saved_replies"), signed_in,
        allowed=lambda w, c: reverse("saved_replies"), data={"name": "New", "content": "Hi"},
        effect=Effect(_reply_named("New"), lambda w, c: True),
        variants=(PLAIN, invalid({"name": "New", "content": "%{NOPE}"})),
    ),
    "saved_reply_edit": _project_route(
        "GET", _global("saved_reply_edit", "own_reply"), own_reply, setup=_saved_reply_each
    ),
    "saved_reply_edit (save)": _project_route(
        "POST", _global("saved_reply_edit", "own_reply"), own_reply, setup=_saved_reply_each,
        allowed=lambda w, c: reverse("saved_replies"), data={"name": "Renamed", "content": "x"},
        effect=Effect(_reply_named("Renamed"), lambda w, c: True),
    ),
    "project_saved_replies": _project_route(
        "GET", _project("project_saved_replies"), project_admin
    ),
    "project_saved_replies (create)": _project_route(
        "POST", _project("project_saved_replies"), project_admin,
        allowed=to_project("project_saved_replies"), data={"name": "New", "content": "Hi"},
        effect=Effect(_reply_named("New"), lambda w, c: True),
    ),
    "project_saved_reply_edit (delete)": _project_route(
        "POST", _project("project_saved_reply_edit", "project_reply"), project_admin,
        setup=_saved_reply_each, allowed=to_project("project_saved_replies"),
        data={"delete": "1"},
        effect=Effect(_reply_named("Refund"), lambda w, c: False),
    ),
    "response_targets": _project_route("GET", _project("response_targets"), project_admin),
    "response_targets (save)": _project_route(
        "POST", _project("response_targets"), project_admin,
        allowed=to_project("response_targets"), data=TARGETS_FORM, effect=TARGETS_ON,
    ),
    "saved_reply_insert": Route(
        "GET",
        lambda w, c: reverse(
            "saved_reply_insert",
            args=[w.project.full_path, w.ctx[c]["iid"], w.ctx["project_reply"]],
        ),
        _internal_upload, setup=_saved_reply_each,
    ),
    # Accounts (accounts/views.py): the profile is one's own; the token pages answer anyone.
    "profile": _project_route("GET", lambda w, c: reverse("profile"), signed_in),
    "profile (save)": _project_route(
        "POST", lambda w, c: reverse("profile"), signed_in,
        allowed=lambda w, c: reverse("profile"), data={"name": "Matrix Name"},
        effect=Effect(lambda w, c: User.objects.filter(name="Matrix Name").count(),
                      lambda w, c: 1),
    ),
    "profile_email": _project_route(
        "POST", lambda w, c: reverse("profile_email"), signed_in,
        allowed=lambda w, c: reverse("profile"), data={"email": "mine@matrix.example"},
        effect=Effect(_account_emails_to("mine@matrix.example"), lambda w, c: 1),
    ),
    "email_confirm": _project_route(
        "GET", lambda w, c: reverse("email_confirm", args=[w.ctx["email_token"]]), everyone,
        setup=_email_token,
    ),
    "email_confirm (confirm)": _project_route(
        "POST", lambda w, c: reverse("email_confirm", args=[w.ctx["email_token"]]), everyone,
        setup=_email_token,
        effect=Effect(lambda w, c: User.objects.get(pk=w.users["owner"].pk).email,
                      lambda w, c: NEW_OWNER_EMAIL),
    ),
    "password_change": _project_route("GET", lambda w, c: reverse("password_change"), signed_in),
    "password_change (wrong password)": _project_route(
        "POST", lambda w, c: reverse("password_change"), signed_in,
        data={"old_password": "wrong", "new_password1": "n3w secret pass",
              "new_password2": "n3w secret pass"},
        effect=Effect(lambda w, c: sorted(u.password for u in User.objects.all())),
    ),
    "password_reset": _project_route("GET", lambda w, c: reverse("password_reset"), everyone),
    # An invalid form only: valid requests count against the per-address limit
    # (tests/accounts/test_accounts.py sends them).
    "password_reset (invalid)": _project_route(
        "POST", lambda w, c: reverse("password_reset"), everyone, data={"email": ""},
        effect=Effect(lambda w, c: OutboundEmail.objects.filter(kind="account").count()),
    ),
    "password_reset_done": _project_route(
        "GET", lambda w, c: reverse("password_reset_done"), everyone
    ),
    "password_reset_confirm": _project_route(
        "GET", lambda w, c: reverse("password_reset_confirm", args=[_uid(w, c), "bad-token"]),
        everyone,
    ),
    "invitation_accept": _project_route(
        "GET", lambda w, c: reverse("invitation_accept", args=[_uid(w, c), "bad-token"]),
        everyone,
    ),
    "signup": _project_route("GET", lambda w, c: reverse("signup"), nobody),
    # New groups and projects: in groups where one is Maintainer+.
    "group_new": _project_route("GET", lambda w, c: reverse("group_new"), signed_in),
    "group_new (create)": _project_route(
        "POST", lambda w, c: reverse("group_new"), group_admin, setup=_group_roles,
        data=lambda w, c: {"path": "matrix-group", "parent": w.project.group.pk},
        allowed=_new_in_group("group_new", "matrix-group"),
        effect=Effect(lambda w, c: Group.objects.filter(path="matrix-group").count(),
                      lambda w, c: 1),
    ),
    "project_new": _project_route("GET", lambda w, c: reverse("project_new"), signed_in),
    "project_new (create)": _project_route(
        "POST", lambda w, c: reverse("project_new"), group_admin, setup=_group_roles,
        data=lambda w, c: {"path": "matrix-project", "group": w.project.group.pk,
                           "visibility": "private"},
        allowed=_new_in_group("project_new", "matrix-project"),
        effect=Effect(lambda w, c: Project.objects.filter(path="matrix-project").count(),
                      lambda w, c: 1),
    ),
    "project_member_invite": _project_route(
        "POST", _project("project_member_invite"), members_change,
        allowed=to_project(MEMBERS), data={"email": INVITEE, "role": Role.REPORTER},
        effect=Effect(
            lambda w, c: Membership.objects.filter(project=w.project, user__email=INVITEE)
            .values_list("role", flat=True).first(),
            lambda w, c: Role.REPORTER,
        ),
    ),
    # The admin area (accounts/admin_area.py): instance admins only (see the staff test).
    "admin_users": _project_route("GET", lambda w, c: reverse("admin_users"), staff_only),
    "admin_users (create)": _project_route(
        "POST", lambda w, c: reverse("admin_users"), staff_only,
        data={"username": "made-by-admin", "email": "made@matrix.example"},
        effect=Effect(lambda w, c: User.objects.filter(username="made-by-admin").exists()),
    ),
    "admin_user_action": _project_route(
        "POST", lambda w, c: reverse("admin_user_action", args=[w.users["guest"].pk, "deactivate"]),
        staff_only,
        effect=Effect(lambda w, c: User.objects.get(pk=w.users["guest"].pk).is_active),
    ),
    "admin_groups": _project_route("GET", lambda w, c: reverse("admin_groups"), staff_only),
    "admin_groups (create)": _project_route(
        "POST", lambda w, c: reverse("admin_groups"), staff_only, data={"path": "admin-made"},
        effect=Effect(lambda w, c: Group.objects.filter(path="admin-made").exists()),
    ),
    "admin_group_edit": _project_route(
        "GET", lambda w, c: reverse("admin_group_edit", args=[w.project.group.pk]), staff_only
    ),
    "admin_group_edit (rename)": _project_route(
        "POST", lambda w, c: reverse("admin_group_edit", args=[w.project.group.pk]), staff_only,
        data={"path": "renamed", "name": "Renamed"},
        effect=Effect(lambda w, c: Project.objects.get(pk=w.project.pk).full_path),
    ),
    "admin_projects": _project_route("GET", lambda w, c: reverse("admin_projects"), staff_only),
    "admin_projects (create)": _project_route(
        "POST", lambda w, c: reverse("admin_projects"), staff_only,
        data=lambda w, c: {"group": w.project.group.pk, "path": "admin-made",
                           "visibility": "private"},
        effect=Effect(lambda w, c: Project.objects.filter(path="admin-made").exists()),
    ),
    "admin_project_edit": _project_route(
        "GET", lambda w, c: reverse("admin_project_edit", args=[w.project.pk]), staff_only
    ),
    "admin_project_edit (rename)": _project_route(
        "POST", lambda w, c: reverse("admin_project_edit", args=[w.project.pk]), staff_only,
        data={"path": "renamed", "name": "Renamed"},
        effect=Effect(lambda w, c: Project.objects.get(pk=w.project.pk).full_path),
    ),
    "admin_templates": _project_route("GET", lambda w, c: reverse("admin_templates"), staff_only),
    "admin_templates (create)": _project_route(
        "POST", lambda w, c: reverse("admin_templates"), staff_only,
        data={"name": "Made", "content": "x"},
        effect=Effect(lambda w, c: DescriptionTemplate.objects.filter(name="Made").exists()),
    ),
    "admin_template_edit": _project_route(
        "GET", _global("admin_template_edit", "instance_template"), staff_only,
        setup=_instance_template,
    ),
    "admin_template_edit (delete)": _project_route(
        "POST", _global("admin_template_edit", "instance_template"), staff_only,
        setup=_instance_template, data={"delete": "1"},
        effect=Effect(lambda w, c: DescriptionTemplate.objects.filter(name="Instance").exists()),
    ),
    "personal_access_tokens": _project_route(
        "GET", lambda w, c: reverse("personal_access_tokens"), signed_in
    ),
    # The answer to the creating POST is the page with the new token's secret (shown once).
    "personal_access_tokens (create)": _project_route(
        "POST", lambda w, c: reverse("personal_access_tokens"), signed_in,
        data=lambda w, c: {"name": "Matrix", "scopes": ["read_api"], "expires_at": _in_a_month()},
        effect=Effect(_tokens_named("Matrix"), lambda w, c: 1),
        variants=(PLAIN, invalid({"name": "Matrix", "scopes": ["sudo"],
                                  "expires_at": "2030-01-01"})),
    ),
    "personal_access_token_revoke": _project_route(
        "POST", _global("personal_access_token_revoke", "token"), own_token,
        setup=_token_each, allowed=lambda w, c: reverse("personal_access_tokens"),
        effect=Effect(
            lambda w, c: PersonalAccessToken.objects.filter(pk=w.ctx["token"],
                                                            revoked_at=None).exists(),
            lambda w, c: False,
        ),
    ),
    "webhook_list": _project_route("GET", _project("webhook_list"), project_admin),
    "webhook_list (add)": _project_route(
        "POST", _project("webhook_list"), project_admin, allowed=to_project("webhook_list"),
        data={"url": HOOK_URL + "/new", "issue_events": "on", "enabled": "on"},
        effect=HOOK_ADDED, variants=(PLAIN, invalid({"url": "not a url"})),
    ),
    "webhook_edit": _project_route("GET", _project("webhook_edit", "hook_id"), project_admin),
    "webhook_edit (save)": _project_route(
        "POST", _project("webhook_edit", "hook_id"), project_admin,
        allowed=to_hook("webhook_edit"),
        data={"url": HOOK_URL + "/edited", "note_events": "on", "enabled": "on"},
        effect=HOOK_SAVED, variants=(PLAIN, invalid({"url": "ftp://127.0.0.1/"})),
    ),
    "webhook_delete": _project_route(
        "POST", _project("webhook_delete", "hook_id"), project_admin,
        allowed=to_project("webhook_list"), effect=HOOK_DELETED,
    ),
    "webhook_test": _project_route(
        "POST", _project("webhook_test", "hook_id"), project_admin,
        allowed=to_hook("webhook_edit"), effect=HOOK_SENT,
    ),
    "webhook_delivery": _project_route(
        "GET", _project("webhook_delivery", "hook_id", "delivery_id"), project_admin
    ),
    "webhook_delivery_resend": _project_route(
        "POST", _project("webhook_delivery_resend", "hook_id", "delivery_id"), project_admin,
        allowed=to_hook("webhook_edit"), effect=HOOK_SENT,
    ),
    "unsubscribe": _project_route(
        "GET", _global("unsubscribe", "unsubscribe_token"), everyone, effect=STILL_SUBSCRIBED,
        shows_own_address=True,
    ),
    "satisfaction": _project_route(
        "GET", lambda w, c: reverse("satisfaction", args=[w.ctx["survey_token"], "good"]),
        everyone, effect=NOT_RATED,
    ),
    "satisfaction (answer)": _project_route(
        "POST", lambda w, c: reverse("satisfaction", args=[w.ctx["survey_token"], "good"]),
        everyone, data={"score": "good"}, effect=RATED,
    ),
    "unsubscribe (confirm)": _project_route(
        "POST", _global("unsubscribe", "unsubscribe_token"), everyone, effect=UNSUBSCRIBED,
        shows_own_address=True,
    ),
}
# fmt: on
# Routes with their own authentication, tested elsewhere: sign-in/out, the health check, ESP
# webhooks (basic auth / signatures: tests/mailroom/test_transports.py), signed file links
# (tests/issues/test_outbound.py), the Django admin.
EXEMPT = {"login", "logout", "health", "upload_by_token"}

# Cells per visibility: personas x (issues x variants) summed over the routes. Written out, so
# that a route or variant that drops out of ROUTES shows here; update it with ROUTES.
MATRIX_CELLS = 1281


def _route_names() -> set[str]:
    def walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, str | None]]:
        found: list[tuple[str, str | None]] = []
        for p in patterns:
            if isinstance(p, URLResolver):
                found += walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                found.append((prefix + str(p.pattern), p.name))
        return found

    return {
        name or route
        for route, name in walk(get_resolver().url_patterns)
        # The REST API has its own matrix (tokens, JSON, 401s): test_api_permission_matrix.py,
        # which checks that it covers every API route.
        if not route.startswith(("admin/", "-/anymail/", "api/v4/"))
    }


def test_every_route_is_in_the_matrix() -> None:
    covered = {name.split(" (")[0] for name in ROUTES} | EXEMPT
    assert _route_names() - covered == set()
    assert covered - EXEMPT - _route_names() == set()  # no stale entries


def test_every_form_action_says_what_it_changes() -> None:
    posts = [name for name, route in ROUTES.items() if route.method == "POST"]
    assert [name for name in posts if ROUTES[name].effect is None] == []
    for name, route in ROUTES.items():
        names = [variant.name for variant in route.variants]
        assert len(names) == len(set(names)), name


def test_the_matrix_has_the_size_written_down() -> None:
    issues = {name: 2 if route.per_issue else 1 for name, route in ROUTES.items()}
    variants = {name: len(route.variants) for name, route in ROUTES.items()}
    assert len(ROLES) * sum(issues[n] * variants[n] for n in ROUTES) == MATRIX_CELLS


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
def test_matrix(visibility: str) -> None:
    """One world per visibility; every request runs in a rolled-back savepoint, so each sees
    the world as built."""
    world = build_world(visibility)
    clients = {}
    for role in ROLES:
        clients[role] = Client()
        if world.users[role] is not None:
            clients[role].force_login(world.users[role])
    failures, cells = [], []
    for name, route in ROUTES.items():
        for variant in route.variants:
            for role in ROLES:
                for confidential in (True, False) if route.per_issue else (True,):
                    cell = Cell(world, route, variant, role, confidential, clients[role])
                    failures += [f"{name} [{variant.name}] {p}" for p in cell.run()]
                    cells.append((name, variant.name, role, confidential))
    assert len(cells) == len(set(cells)) == MATRIX_CELLS
    assert not failures, "\n".join(failures)
    _assert_reporters_see_the_secrets(world, clients["reporter"])


def _assert_reporters_see_the_secrets(world: World, client: Client) -> None:
    """The leak scan looks for what Reporters do see: were the world to lose an address, the
    scan would pass for nothing."""
    issue_list = ROUTES["issue_list"].url(world, True)
    pages = _body(client.get(_issue_url(world, True))) + _body(client.get(issue_list))
    assert [address for address in world.secrets if address.encode() not in pages] == []
    assert CUSTOMER.encode() in _body(client.get(_customer_page(world, True)))


def _login_url(url: str) -> str:
    return redirect_to_login(url).url


def _body(response: HttpResponseBase) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)  # type: ignore[attr-defined]
    return response.content  # type: ignore[attr-defined]


@dataclass
class Cell:
    world: World
    route: Route
    variant: Variant
    role: str
    confidential: bool
    client: Client

    def run(self) -> list[str]:
        world, route, c = self.world, self.route, self.confidential
        denial = route.expect(LEVEL[self.role], world.visibility, c)
        with transaction.atomic():
            if route.setup:
                route.setup(world, c)
            url = route.url(world, c)  # after the setup: it may make what the URL names
            before = route.effect.state(world, c) if route.effect else None
            response = self._send(url)
            wanted = self._wanted(url, denial)
            problems = self._answer(response, wanted)
            if route.effect:
                acts = not denial and wanted != 400
                problems += self._effect(before, acts=acts)
            if LEVEL[self.role] < 20 and not route.shows_own_address:
                problems += self._leaks(response)
            if CUSTOM_PASSWORD.encode() in _body(response):  # not even to its Owners
                problems.append("shows a project's SMTP password")
            transaction.set_rollback(True)
        self.client.cookies.pop("messages", None)  # a flash message is for its own cell only
        kind = "conf" if c else "open"
        return [f"{self.role:10} {kind} {route.method} {url}: {p}" for p in problems]

    def _send(self, url: str) -> HttpResponseBase:
        data = self.variant.data if self.variant.data is not None else self.route.data
        if callable(data):
            data = data(self.world, self.confidential)
        headers = self.variant.headers
        if self.route.method == "GET":
            return self.client.get(url, headers=headers)
        return self.client.post(url, data or {}, headers=headers)

    def _wanted(self, url: str, denial: int) -> Answer:
        if denial:
            return _login_url(url) if self.role == "anonymous" else denial
        allowed = self.variant.allowed if self.variant.allowed is not None else self.route.allowed
        return allowed if isinstance(allowed, int) else allowed(self.world, self.confidential)

    def _answer(self, response: HttpResponseBase, wanted: Answer) -> list[str]:
        status, location = response.status_code, response.get("Location", "")
        problems = []
        if isinstance(wanted, str):
            if (status, location) != (302, wanted):
                problems.append(f"→ {status} {location}, wanted 302 to {wanted}")
        elif status != wanted:
            problems.append(f"→ {status} {location}, wanted {wanted}")
        # Whatever the answer, no cache keeps it: pages, files, denials and redirects alike.
        if response.get("Cache-Control") != "private, no-store":
            problems.append(f"→ Cache-Control {response.get('Cache-Control')!r}")
        return problems

    def _effect(self, before: object, *, acts: bool) -> list[str]:
        effect, world, c = self.route.effect, self.world, self.confidential
        assert effect is not None
        now = effect.state(world, c)
        if acts and effect.after is not None:
            after = effect.after(world, c)
            if before == after:
                return [f"the effect check cannot tell: {after!r} before the request already"]
            if now != after:
                return [f"the action was not done: {before!r} → {now!r}, wanted {after!r}"]
        elif now != before:
            return [f"changed {before!r} → {now!r}, wanted no change"]
        return []

    def _leaks(self, response: HttpResponseBase) -> list[str]:
        """No customer address below Reporter, in this response or where it redirects to."""
        problems = []
        seen = [(f"→ {response.status_code}", _body(response))]
        location = response.get("Location", "")
        if response.status_code == 302 and not location.startswith(_login_url("")):
            followed = self.client.get(location)
            if followed.status_code != 200:
                problems.append(f"→ 302 to {location}, which answers {followed.status_code}")
            seen.append((f"→ 302 to {location}, whose page", _body(followed)))
        for answer, body in seen:
            for address in self.world.secrets:
                if address.encode() in body:
                    problems.append(f"{answer} shows {address} below Reporter")
        return problems


def test_staff_reach_the_instance_ledger_and_others_do_not(client) -> None:
    staff = UserFactory(username="staffer", is_staff=True)
    message = InboundMessage.objects.create(transport="t", raw=b"x", size=1, status="done",
                                            outcome="rejected", reason="no key found")  # fmt: skip
    for url in (reverse("instance_inbound_list"),
                reverse("instance_inbound_detail", args=[message.pk]),
                reverse("instance_inbound_raw", args=[message.pk])):  # fmt: skip
        client.force_login(staff)
        assert client.get(url).status_code == 200, url
        client.force_login(UserFactory())
        assert client.get(url).status_code == 404, url
