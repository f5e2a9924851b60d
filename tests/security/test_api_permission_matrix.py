"""The REST API's permission matrix: every /api/v4 endpoint x {Owner, Maintainer, Developer,
Reporter, Guest, outsider, anonymous} x {confidential, ordinary issue} x {private, public
project} x {an ``api`` token, a ``read_api`` token on writes}, against the policy written out
below — independently of projects/permissions.py, which the API asks.

The world is the browser matrix's (tests/security/test_permission_matrix.py: the same
personas, issues, customer addresses, held note, ledger email). The API's policy is the
browser's, in HTTP's words:
- what one cannot read is a 404 (a private project, a confidential issue below Reporter), for
  anonymous callers too: its existence is not told;
- what one can read but not do is a 403, or a 401 for an anonymous caller (a token may help);
- the Service Desk settings and address are for Reporter+, changing them and the inbound
  ledger for Maintainer+; below that, members who know they exist (Reporter+, or any member of
  a public project) get 403, others 404 (anonymous callers of a readable project: 401);
- a ``read_api`` token never writes: every write is a 403, whatever the role, and nothing
  changes;
- no customer address below Reporter in any answer; no reply key or unsubscribe token in any
  answer, whoever asks.

Each cell runs in a savepoint rolled back afterwards and checks the exact status, that the
write happened (allowed) or did not (refused), what a list holds for that persona, and the
leak scan. A new API route that is not in API_ROUTES fails ``test_every_api_route_is_covered``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from api.services import token_create
from issues.models import Issue, Note, SentNotification
from projects.models import Visibility
from tests.security.test_permission_matrix import (
    ASSIGNED,
    CLOSED,
    COMMENT,
    INTERNAL_NOTE_ADDED,
    LABELLED,
    LEVEL,
    MOVED,
    NEW_ADDRESS,
    NOTE_ADDED,
    PARTICIPANT_ADDED,
    PARTICIPANT_REMOVED,
    REOPENED,
    ROLES,
    SETTINGS_SAVED,
    Effect,
    World,
    _close,
    build_world,
    reads_issue,
    reads_project,
)

pytestmark = pytest.mark.django_db
NEW_TITLE = "From the API matrix"

# --- The policy: 0 (allowed), 401, 403 or 404 for (role level, visibility, confidential) ------


def api_issue(minimum: int) -> Callable[[int, str, bool], int]:
    """On an issue: 404 if unreadable, else allowed from ``minimum`` (-1: anyone, 0: signed
    in), 401 for anonymous callers below it, 403 for others."""

    def expect(level: int, visibility: str, confidential: bool) -> int:
        if not reads_issue(level, visibility, confidential):
            return 404
        if level >= minimum:
            return 0
        return 401 if level < 0 else 403

    return expect


def api_project(minimum: int) -> Callable[[int, str, bool], int]:
    def expect(level: int, visibility: str, _confidential: bool) -> int:
        if not reads_project(level, visibility):
            return 404
        if level >= minimum:
            return 0
        return 401 if level < 0 else 403

    return expect


def api_admin(minimum: int) -> Callable[[int, str, bool], int]:
    """Settings and the ledger: 403 only for members who know they exist."""

    def expect(level: int, visibility: str, _confidential: bool) -> int:
        if level >= minimum:
            return 0
        if not reads_project(level, visibility):
            return 404
        if level < 0:
            return 401
        knows = level >= 20 or (level >= 10 and visibility == Visibility.PUBLIC)
        return 403 if knows else 404

    return expect


def signed_in(level: int, _visibility: str, _confidential: bool) -> int:
    return 0 if level >= 0 else 401


def everyone(level: int, _visibility: str, _confidential: bool) -> int:
    return 0


# --- What an allowed request holds ---------------------------------------------------------------

Check = Callable[[World, int, bool, Any], list[str]]


def _project_listed(world: World, level: int, _c: bool, body: Any) -> list[str]:
    listed = world.project.full_path in {p["path_with_namespace"] for p in body}
    if listed != reads_project(level, world.visibility):
        return [f"the project is {'' if listed else 'not '}listed"]
    return []


def _issues_listed(world: World, level: int, _c: bool, body: Any) -> list[str]:
    wanted = {world.ctx[False]["iid"]} | ({world.ctx[True]["iid"]} if level >= 20 else set())
    found = {issue["iid"] for issue in body}
    return [] if found == wanted else [f"lists issues {sorted(found)}, wanted {sorted(wanted)}"]


def _internal_notes_listed(world: World, level: int, _c: bool, body: Any) -> list[str]:
    internal = any(note["internal"] for note in body)
    if internal != (level >= 20):
        return [f"internal notes {'' if internal else 'not '}listed"]
    return []


# --- Routes -------------------------------------------------------------------------------------

Data = dict[str, Any] | Callable[[World, bool], dict[str, Any]] | None
Allowed = int | Callable[[World, bool], int]


@dataclass(frozen=True)
class ApiRoute:
    name: str  # the URL pattern's name
    method: str
    url: Callable[[World, bool], str]
    expect: Callable[[int, str, bool], int]
    allowed: Allowed = 200
    per_issue: bool = True
    data: Data = None
    effect: Effect | None = None
    setup: Callable[[World, bool], None] | None = None
    check: Check | None = None

    @property
    def writes(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")


def _path(world: World) -> str:
    return quote(world.project.full_path, safe="")


def _on_project(suffix: str = "", *, by_id: bool = False) -> Callable[[World, bool], str]:
    def url(world: World, _c: bool) -> str:
        name = str(world.project.pk) if by_id else _path(world)
        return f"/api/v4/projects/{name}{suffix}"

    return url


def _on_issue(suffix: str = "") -> Callable[[World, bool], str]:
    def url(world: World, c: bool) -> str:
        return f"/api/v4/projects/{_path(world)}/issues/{world.ctx[c]['iid']}{suffix}"

    return url


def _participant_url(world: World, c: bool) -> str:
    return _on_issue(f"/participants/{world.ctx[c]['participant_id']}")(world, c)


def _confidentiality_answer(world: World, confidential: bool) -> int:
    # An issue that came by email in a public project stays confidential, whoever asks.
    return 400 if confidential and world.visibility == Visibility.PUBLIC else 200


def _created(**filters: Any) -> Effect:
    return Effect(lambda w, c: Issue.objects.filter(**filters).count(), lambda w, c: 1)


def _tokens(world: World, _c: bool) -> dict[str, Any]:
    return world.ctx["tokens"]


# fmt: off
API_ROUTES: dict[str, ApiRoute] = {route.name + (f" ({label})" if label else ""): route
                                   for label, route in [
    ("", ApiRoute("api_user", "GET", lambda w, c: "/api/v4/user", signed_in, per_issue=False)),
    ("", ApiRoute("api_projects", "GET", lambda w, c: "/api/v4/projects", everyone,
                  per_issue=False, check=_project_listed)),
    ("", ApiRoute("api_project", "GET", _on_project(), api_project(-1), per_issue=False)),
    ("by id", ApiRoute("api_project", "GET", _on_project(by_id=True), api_project(-1),
                       per_issue=False)),
    ("", ApiRoute("api_issues", "GET", _on_project("/issues"), api_project(-1), per_issue=False,
                  check=_issues_listed)),
    ("create", ApiRoute("api_issues", "POST", _on_project("/issues"), api_project(0),
                        allowed=201, per_issue=False, data={"title": NEW_TITLE},
                        effect=_created(title=NEW_TITLE))),
    ("for a customer", ApiRoute(
        "api_issues", "POST", _on_project("/issues"), api_project(20), allowed=201,
        per_issue=False, data={"title": NEW_TITLE, "service_desk_email": NEW_ADDRESS},
        effect=_created(external_author=NEW_ADDRESS))),
    ("", ApiRoute("api_issue", "GET", _on_issue(), api_issue(-1))),
    ("close", ApiRoute("api_issue", "PUT", _on_issue(), api_issue(20),
                       data={"state_event": "close"}, effect=CLOSED)),
    ("reopen", ApiRoute("api_issue", "PUT", _on_issue(), api_issue(20),
                        data={"state_event": "reopen"}, effect=REOPENED, setup=_close)),
    ("labels", ApiRoute("api_issue", "PUT", _on_issue(), api_issue(20), data={"labels": "bug"},
                        effect=LABELLED)),
    ("add_labels", ApiRoute("api_issue", "PUT", _on_issue(), api_issue(20),
                            data={"add_labels": "bug"}, effect=LABELLED)),
    ("assignees", ApiRoute("api_issue", "PUT", _on_issue(), api_issue(20),
                           data=lambda w, c: {"assignee_ids": [w.users["reporter"].pk]},
                           effect=ASSIGNED)),
    ("confidential", ApiRoute(
        "api_issue", "PUT", _on_issue(), api_issue(20), allowed=_confidentiality_answer,
        data=lambda w, c: {"confidential": not c},
        effect=Effect(lambda w, c: Issue.objects.get(pk=w.issues[c].pk).confidential,
                      lambda w, c: not c))),
    ("", ApiRoute("api_issue_move", "POST", _on_issue("/move"), api_issue(20), allowed=201,
                  data=lambda w, c: {"to_project_id": w.target.pk}, effect=MOVED)),
    ("", ApiRoute("api_notes", "GET", _on_issue("/notes"), api_issue(-1),
                  check=_internal_notes_listed)),
    ("comment", ApiRoute("api_notes", "POST", _on_issue("/notes"), api_issue(0), allowed=201,
                         data={"body": COMMENT}, effect=NOTE_ADDED)),
    ("internal note", ApiRoute("api_notes", "POST", _on_issue("/notes"), api_issue(20),
                               allowed=201, data={"body": COMMENT, "internal": True},
                               effect=INTERNAL_NOTE_ADDED)),
    ("", ApiRoute("api_participants", "GET", _on_issue("/participants"), api_issue(20))),
    ("add", ApiRoute("api_participants", "POST", _on_issue("/participants"), api_issue(20),
                     allowed=201, data={"email": NEW_ADDRESS}, effect=PARTICIPANT_ADDED)),
    ("", ApiRoute("api_participant", "DELETE", _participant_url, api_issue(20), allowed=204,
                  effect=PARTICIPANT_REMOVED)),
    ("", ApiRoute("api_service_desk", "GET", _on_project("/service_desk"), api_admin(20),
                  per_issue=False)),
    ("save", ApiRoute("api_service_desk", "PUT", _on_project("/service_desk"), api_admin(40),
                      per_issue=False, data={"outgoing_name": "Help desk"},
                      effect=SETTINGS_SAVED)),
    ("", ApiRoute("api_inbound_emails", "GET", _on_project("/inbound_emails"), api_admin(40),
                  per_issue=False)),
    ("", ApiRoute("api_inbound_email", "GET",
                  lambda w, c: _on_project(f"/inbound_emails/{w.ctx['message_id']}")(w, c),
                  api_admin(40), per_issue=False)),
    ("", ApiRoute("api_schema", "GET", lambda w, c: "/api/v4/openapi", everyone,
                  per_issue=False)),
    ("", ApiRoute("api_docs", "GET", lambda w, c: "/api/v4/docs", everyone, per_issue=False)),
]}
# fmt: on
TOKEN_KINDS = ("api", "read_api")  # every write also with a read_api token
# Cells per visibility, written out: a route that drops out of API_ROUTES shows here.
API_MATRIX_CELLS = 462


def _api_route_names() -> set[str]:
    def walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, str | None]]:
        found: list[tuple[str, str | None]] = []
        for p in patterns:
            if isinstance(p, URLResolver):
                found += walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                found.append((prefix + str(p.pattern), p.name))
        return found

    return {name or r for r, name in walk(get_resolver().url_patterns) if r.startswith("api/v4/")}


def test_every_api_route_is_covered() -> None:
    covered = {route.name for route in API_ROUTES.values()}
    assert _api_route_names() == covered


def _cells() -> int:
    return sum(
        len(ROLES) * (2 if route.per_issue else 1) * (2 if route.writes else 1)
        for route in API_ROUTES.values()
    )


def test_the_api_matrix_has_the_size_written_down() -> None:
    assert _cells() == API_MATRIX_CELLS


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
def test_api_matrix(visibility: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_API_REQUESTS_PER_MINUTE = 0  # the matrix is no burst to limit
    world = build_world(visibility)
    world.ctx["keys"] = [
        key
        for sent in SentNotification.objects.all()
        for key in (sent.reply_key, sent.unsubscribe_token)
    ]
    tokens: dict[tuple[str, str], str | None] = {}
    expiry = timezone.now().date() + timedelta(days=7)
    for role in ROLES:
        for kind in TOKEN_KINDS:
            user = world.users[role]
            tokens[role, kind] = (
                None
                if user is None
                else token_create(user=user, name=kind, scopes=[kind], expires_at=expiry).secret
            )
    failures, cells = [], []
    client = Client()
    for name, route in API_ROUTES.items():
        for kind in TOKEN_KINDS if route.writes else ("api",):
            for role in ROLES:
                for confidential in (True, False) if route.per_issue else (True,):
                    cell = ApiCell(world, route, role, confidential, kind, tokens[role, kind])
                    failures += [f"{name} [{kind}] {problem}" for problem in cell.run(client)]
                    cells.append((name, kind, role, confidential))
    assert len(cells) == len(set(cells)) == API_MATRIX_CELLS
    assert not failures, "\n".join(failures)
    _assert_reporters_see_the_secrets(world, client, tokens["reporter", "api"])


def _assert_reporters_see_the_secrets(world: World, client: Client, token: str | None) -> None:
    """The leak scan looks for what Reporters do get: were the API to drop the addresses
    altogether, the scan below Reporter would pass for nothing."""
    headers = {"PRIVATE-TOKEN": token or ""}
    bodies = b"".join(
        client.get(url, headers=headers).content
        for url in (
            _on_issue()(world, True),
            _on_issue("/notes")(world, True),
            _on_issue("/participants")(world, True),
            _on_project("/service_desk")(world, True),
        )
    )
    assert [secret for secret in world.secrets if secret.encode() not in bodies] == []


@dataclass
class ApiCell:
    world: World
    route: ApiRoute
    role: str
    confidential: bool
    kind: str
    token: str | None
    problems: list[str] = field(default_factory=list)

    def expected(self) -> int | Callable[[World, bool], int]:
        if self.kind == "read_api" and self.token is not None:
            return 403  # insufficient scope, before anything is looked up
        denial = self.route.expect(LEVEL[self.role], self.world.visibility, self.confidential)
        return denial or self.route.allowed

    def run(self, client: Client) -> list[str]:
        world, route, c = self.world, self.route, self.confidential
        with transaction.atomic():
            if route.setup:
                route.setup(world, c)
            url = route.url(world, c)
            before = route.effect.state(world, c) if route.effect else None
            response = self._send(client, url)
            wanted = self.expected()
            wanted = wanted if isinstance(wanted, int) else wanted(world, c)
            problems = []
            if response.status_code != wanted:
                problems.append(f"→ {response.status_code}, wanted {wanted}")
            if response.get("Cache-Control") != "private, no-store":
                problems.append(f"→ Cache-Control {response.get('Cache-Control')!r}")
            if route.effect:
                problems += self._effect(before, acts=wanted in (200, 201, 204))
            if route.check and wanted == 200 and response.status_code == 200:
                problems += route.check(world, LEVEL[self.role], c, response.json())
            problems += self._leaks(response.content)
            transaction.set_rollback(True)
        kind = "conf" if c else "open"
        return [f"{self.role:10} {kind} {route.method} {url}: {p}" for p in problems]

    def _send(self, client: Client, url: str) -> Any:
        data = (
            self.route.data(self.world, self.confidential)
            if callable(self.route.data)
            else (self.route.data)
        )
        headers = {"PRIVATE-TOKEN": self.token} if self.token else {}
        method = getattr(client, self.route.method.lower())
        if self.route.method == "GET":
            return method(url, headers=headers)
        return method(url, json.dumps(data or {}), content_type="application/json", headers=headers)

    def _effect(self, before: object, *, acts: bool) -> list[str]:
        effect = self.route.effect
        assert effect is not None
        now = effect.state(self.world, self.confidential)
        if acts and effect.after is not None:
            after = effect.after(self.world, self.confidential)
            if before == after:
                return [f"the effect check cannot tell: {after!r} before the request already"]
            if now != after:
                return [f"the action was not done: {before!r} → {now!r}, wanted {after!r}"]
        elif now != before:
            return [f"changed {before!r} → {now!r}, wanted no change"]
        return []

    def _leaks(self, body: bytes) -> list[str]:
        problems = [
            "shows a reply key or unsubscribe token"
            for key in self.world.ctx["keys"]
            if key.encode() in body
        ]
        if LEVEL[self.role] < 20:
            problems += [
                f"shows {secret} below Reporter"
                for secret in self.world.secrets
                if secret.encode() in body
            ]
        return problems


def test_held_note_from_a_stranger_is_not_listed_below_reporter(settings) -> None:  # type: ignore[no-untyped-def]
    """The held reply (internal, from a non-participant) is in the Reporter's list with its
    sender, and in nobody's below (the matrix checks the addresses; this, the note)."""
    world = build_world(Visibility.PUBLIC)
    expiry = timezone.now().date() + timedelta(days=7)
    held = Note.objects.get(pk=world.ctx[False]["held_note_id"])
    client = Client()
    for role, present in (("reporter", True), ("guest", False), ("outsider", False)):
        secret = token_create(
            user=world.users[role], name="t", scopes=["read_api"], expires_at=expiry
        ).secret
        notes = client.get(_on_issue("/notes")(world, False), headers={"PRIVATE-TOKEN": secret})
        assert (held.pk in {note["id"] for note in notes.json()}) is present, role
