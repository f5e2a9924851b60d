"""The permission matrix: every page, form action and download of the product x
{Owner, Maintainer, Developer, Reporter, Guest, outsider, anonymous} x {confidential, ordinary
issue} x {private, public project}, against the policy written out below — independently of
projects/permissions.py, which the views use.

The policy (SPEC §8, GitLab's roles):
- anonymous visitors are sent to the login page from every page that needs an account, whether
  it exists or not (no existence leak);
- a project is readable by its members, and by every signed-in person when public; a
  confidential issue by Reporter+ only; what one cannot read is a 404;
- commenting: whoever can read the issue; closing, labels, assignees, confidentiality,
  participants, converting, moving: Reporter+ (403 for those who can read but not act);
- settings, description templates and the inbound ledger: Maintainer+; below that, members who
  know the page exists (Reporter+, or any member of a public project) get 403, others 404;
- the spam quarantine: Reporter+, 404 for everyone else;
- members page: anyone signed in who can read the project (anonymous visitors are sent to the
  login page, even for a public project); changing members: Maintainer+;
- the instance-wide ledger: staff only, 404 for everyone else;
- customer email addresses appear only for Reporter+;
- every answer is ``Cache-Control: private, no-store``.

A new URL that is not in ROUTES fails ``test_every_route_is_in_the_matrix``: nothing ships
outside the matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from issues.models import EmailParticipant, Issue, SentNotification
from issues.services import note_create, participant_add, upload_create
from mailroom.models import InboundMessage
from projects.models import DescriptionTemplate, Membership, Role, Visibility
from tests.factories import GroupFactory, IssueFactory, ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db
ROLES = ["owner", "maintainer", "developer", "reporter", "guest", "outsider", "anonymous"]
LEVEL = {"owner": 50, "maintainer": 40, "developer": 30, "reporter": 20, "guest": 10,
         "outsider": 0, "anonymous": -1}  # fmt: skip
CUSTOMER = "jake@customer.example"


@dataclass
class World:
    project: Any
    issues: dict[bool, Issue]  # confidential? -> issue
    users: dict[str, Any]
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
            from projects.services import member_add

            member_add(user=user, project=target, role=Role.OWNER)
    issues = {}
    ctx: dict[str, Any] = {"target": target.full_path}
    for confidential in (True, False):
        issue = IssueFactory(project=project, author=users["owner"], confidential=confidential,
                             title=f"{'Secret' if confidential else 'Open'} issue",
                             external_author=CUSTOMER)  # fmt: skip
        participant, _ = participant_add(issue=issue, email=CUSTOMER)
        note = note_create(issue=issue, author=users["reporter"], body="internal", internal=True)
        held = note_create(
            issue=issue,
            author=users["reporter"],
            body="From a stranger",
            external_author="stranger@else.example",
            from_non_participant=True,
        )
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
    ctx["message_id"] = InboundMessage.objects.create(
        transport="test", raw=b"Subject: x\r\n\r\nx", size=14, project=project,
        status="done", outcome="rejected", reason="empty email",
    ).pk  # fmt: skip
    ctx["spam_id"] = InboundMessage.objects.create(
        transport="test", raw=b"Subject: cheap\r\n\r\nx", size=20, project=project,
        status="done", outcome="spam", reason="spam (spam)",
    ).pk  # fmt: skip
    sent = SentNotification.objects.create(
        issue=issues[True], participant=EmailParticipant.objects.get(issue=issues[True]),
        recipient=CUSTOMER,
    )  # fmt: skip
    ctx["unsubscribe_token"] = sent.unsubscribe_token
    return World(project, issues, users, ctx)


# --- The policy ---------------------------------------------------------------------------------


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


def reporter_only(level: int, visibility: str, _confidential: bool) -> int:
    """Pages with customers' addresses and nothing for lower roles: 404 below Reporter."""
    return 0 if level >= 20 else 404


def staff_only(level: int, visibility: str, _confidential: bool) -> int:
    return 404  # none of the personas is staff; the staff check is in its own test


def everyone(level: int, visibility: str, _confidential: bool) -> int:
    return 0


@dataclass
class Route:
    method: str
    url: Callable[[World, bool], str]
    expect: Callable[[int, str, bool], int]
    per_issue: bool = True  # confidential and ordinary issue both checked
    data: dict[str, Any] | None = None
    anonymous_allowed: bool = False
    shows_own_address: bool = False  # the page is for the customer (their own address is fine)


def _issue(name: str, *extra: str) -> Callable[[World, bool], str]:
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


def _internal_upload(level: int, visibility: str, confidential: bool) -> int:
    return 0 if reads_issue(level, visibility, confidential) and level >= 20 else 404


ROUTES: dict[str, Route] = {
    "home": Route("GET", lambda w, c: reverse("home"), everyone, per_issue=False),
    "project_detail": Route("GET", _project("project_detail"), project_read, per_issue=False),
    "issue_list": Route("GET", _project("issue_list"), project_read, per_issue=False),
    "issue_detail": Route("GET", _issue("issue_detail"), issue_action(-1)),
    "note_add": Route("POST", _issue("note_add"), issue_action(0), data={"body": "Hi"}),
    "note_preview": Route("POST", _issue("note_preview"), issue_action(0), data={"body": "*x*"}),
    "issue_close": Route("POST", _issue("issue_close"), issue_action(20)),
    "issue_reopen": Route("POST", _issue("issue_reopen"), issue_action(20)),
    "issue_labels": Route("POST", _issue("issue_labels"), issue_action(20)),
    "issue_assignees": Route("POST", _issue("issue_assignees"), issue_action(20)),
    "issue_confidentiality": Route("POST", _issue("issue_confidentiality"), issue_action(20)),
    "participant_add": Route(
        "POST", _issue("participant_add"), issue_action(20), data={"email": "new@customer.example"}
    ),
    "participant_remove": Route(
        "POST", _issue("participant_remove", "participant_id"), issue_action(20)
    ),
    "participant_bouncing_clear": Route(
        "POST", _issue("participant_bouncing_clear", "participant_id"), issue_action(20)
    ),
    "note_make_public": Route("POST", _issue("note_make_public", "held_note_id"), issue_action(20)),
    "issue_convert": Route(
        "POST", _issue("issue_convert"), issue_action(20), data={"email": "new@customer.example"}
    ),
    "issue_move": Route("POST", _issue("issue_move"), issue_action(20)),
    "upload": Route("GET", _upload("upload"), issue_action(-1)),
    "upload (internal note)": Route("GET", _upload("internal_upload"), _internal_upload),
    "service_desk_settings": Route(
        "GET", _project("service_desk_settings"), project_admin, per_issue=False
    ),
    "service_desk_settings (save)": Route(
        "POST", _project("service_desk_settings"), project_admin, per_issue=False
    ),
    "service_desk_regenerate": Route(
        "POST", _project("service_desk_regenerate"), project_admin, per_issue=False
    ),
    "service_desk_email_template": Route(
        "GET",
        lambda w, c: reverse(
            "service_desk_email_template", args=[w.project.full_path, "thank_you"]
        ),
        project_admin,
        per_issue=False,
    ),
    "service_desk_email_preview": Route(
        "POST",
        lambda w, c: reverse("service_desk_email_preview", args=[w.project.full_path, "thank_you"]),
        project_admin,
        per_issue=False,
        data={"text": "Hello %{ISSUE_ID}"},
    ),
    "description_template_list": Route(
        "GET", _project("description_template_list"), project_admin, per_issue=False
    ),
    "description_template_new": Route(
        "GET", _project("description_template_new"), project_admin, per_issue=False
    ),
    "description_template_edit": Route(
        "GET", _project("description_template_edit", "template_id"), project_admin, per_issue=False
    ),
    "description_template_delete": Route(
        "POST",
        _project("description_template_delete", "template_id"),
        project_admin,
        per_issue=False,
    ),
    "project_members": Route("GET", _project("project_members"), members_read, per_issue=False),
    "project_members (add)": Route(
        "POST",
        _project("project_members"),
        members_change,
        per_issue=False,
        data={"username": "nobody", "role": 20},
    ),
    "project_member_update": Route(
        "POST",
        _project("project_member_update", "membership_id"),
        members_change,
        per_issue=False,
        data={"role": 20},
    ),
    "project_member_remove": Route(
        "POST", _project("project_member_remove", "membership_id"), members_change, per_issue=False
    ),
    "project_inbound_list": Route(
        "GET", _project("project_inbound_list"), project_admin, per_issue=False
    ),
    "project_inbound_detail": Route(
        "GET", _project("project_inbound_detail", "message_id"), project_admin, per_issue=False
    ),
    "project_inbound_raw": Route(
        "GET", _project("project_inbound_raw", "message_id"), project_admin, per_issue=False
    ),
    "project_inbound_reprocess": Route(
        "POST", _project("project_inbound_reprocess", "message_id"), project_admin, per_issue=False
    ),
    "instance_inbound_list": Route(
        "GET", _global("instance_inbound_list"), staff_only, per_issue=False
    ),
    "instance_inbound_detail": Route(
        "GET", _global("instance_inbound_detail", "message_id"), staff_only, per_issue=False
    ),
    "instance_inbound_raw": Route(
        "GET", _global("instance_inbound_raw", "message_id"), staff_only, per_issue=False
    ),
    "instance_inbound_reprocess": Route(
        "POST", _global("instance_inbound_reprocess", "message_id"), staff_only, per_issue=False
    ),
    "project_dashboard": Route(
        "GET", _project("project_dashboard"), reporter_only, per_issue=False
    ),
    "spam_list": Route("GET", _project("spam_list"), reporter_only, per_issue=False),
    "spam_not_spam": Route(
        "POST", _project("spam_not_spam", "spam_id"), reporter_only, per_issue=False
    ),
    "spam_delete": Route(
        "POST", _project("spam_delete", "spam_id"), reporter_only, per_issue=False
    ),
    "unsubscribe": Route(
        "GET",
        _global("unsubscribe", "unsubscribe_token"),
        everyone,
        per_issue=False,
        anonymous_allowed=True,
        shows_own_address=True,
    ),
}
# Routes with their own authentication, tested elsewhere: sign-in/out, the health check, ESP
# webhooks (basic auth / signatures: tests/mailroom/test_transports.py), signed file links
# (tests/issues/test_outbound.py), the Django admin.
EXEMPT = {"login", "logout", "health", "upload_by_token"}


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
        if not route.startswith(("admin/", "-/anymail/"))
    }


def test_every_route_is_in_the_matrix() -> None:
    covered = {name.split(" (")[0] for name in ROUTES} | EXEMPT
    assert _route_names() - covered == set()
    assert covered - EXEMPT - _route_names() == set()  # no stale entries


MATRIX_SIZE: dict[str, int] = {}


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
    failures = []
    for name, route in ROUTES.items():
        for role in ROLES:
            for confidential in (True, False) if route.per_issue else (True,):
                failure = _check(world, route, role, visibility, confidential, clients[role])
                MATRIX_SIZE[visibility] = MATRIX_SIZE.get(visibility, 0) + 1
                if failure:
                    failures.append(f"{name}: {failure}")
    assert not failures, "\n".join(failures)


def _check(world: World, route: Route, role: str, visibility: str, confidential: bool,
           client: Client) -> str | None:  # fmt: skip
    url = route.url(world, confidential)
    with transaction.atomic():
        response = client.get(url) if route.method == "GET" else client.post(url, route.data or {})
        transaction.set_rollback(True)
    status = response.status_code
    denial = route.expect(LEVEL[role], visibility, confidential)
    needs_account = route.method == "POST" or denial or route.expect is everyone
    if role == "anonymous" and not route.anonymous_allowed and needs_account:
        ok = status == 302 and "/login/" in response.get("Location", "")
        wanted = "302 to login"
    else:
        wanted = str(denial) if denial else "allowed (200/302/400)"
        ok = status == denial if denial else status in (200, 302, 400)
        if (
            ok
            and status == 200
            and route.method == "GET"
            and LEVEL[role] < 20
            and not (route.shows_own_address)
        ):
            body = b"".join(response.streaming_content) if response.streaming else response.content
            if CUSTOMER.encode() in body:
                ok, wanted = False, "no customer address below Reporter"
    # Whatever the answer, no cache keeps it: pages, files, denials and redirects alike.
    if ok and response.get("Cache-Control") != "private, no-store":
        ok, wanted = False, f"{wanted} with Cache-Control: private, no-store"
    if ok:
        return None
    kind = "conf" if confidential else "open"
    return f"{role:10} {kind} {route.method} {url} → {status}, wanted {wanted}"


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
