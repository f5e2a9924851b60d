"""The API as a GitLab client uses it: lists with GitLab's filters and pagination headers, a
fixed number of queries per page, issue updates, moves, notes, participants, the Service Desk
settings and the inbound ledger."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from api.services import token_create
from issues.models import EmailParticipant, Issue, Note, OutboundEmail
from issues.services import issue_assignees_set, issue_close, issue_labels_set, note_create
from mailroom.models import InboundMessage
from projects.models import DescriptionTemplate, ServiceDeskSetting
from tests.factories import GroupFactory, IssueFactory, LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db
CUSTOMER = "jake@customer.example"


class Api:
    """A client with a token, as a script would hold one."""

    def __init__(self, user: Any, scope: str = "api") -> None:
        expiry = timezone.now().date() + timedelta(days=30)
        self.secret = token_create(user=user, name="test", scopes=[scope], expires_at=expiry).secret
        self.client = Client()

    def _headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.secret}

    def get(self, path: str, **params: Any):  # type: ignore[no-untyped-def]
        return self.client.get(f"/api/v4{path}", params, headers=self._headers())

    def send(self, method: str, path: str, data: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
        call = getattr(self.client, method)
        body = json.dumps(data or {})
        return call(
            f"/api/v4{path}", body, content_type="application/json", headers=self._headers()
        )


@pytest.fixture
def api(reporter) -> Api:  # type: ignore[no-untyped-def]
    return Api(reporter)


@pytest.fixture
def tracker(project, reporter, maintainer):  # type: ignore[no-untyped-def]
    """Five issues: #1 bug (open, assigned to bob), #2 billing (closed), #3 confidential ticket
    from a customer, #4 and #5 plain."""
    bug, billing = (
        LabelFactory(project=project, title="bug"),
        LabelFactory(project=project, title="billing"),
    )
    issues = [
        IssueFactory(project=project, author=maintainer, title="Crash on start"),
        IssueFactory(project=project, author=reporter, title="Invoice wrong"),
        IssueFactory(
            project=project,
            author=maintainer,
            title="Refund please",
            confidential=True,
            external_author=CUSTOMER,
        ),
        IssueFactory(project=project, author=maintainer, title="Slow menu"),
        IssueFactory(project=project, author=maintainer, title="Typo in help"),
    ]
    issue_labels_set(issue=issues[0], user=maintainer, labels=[bug])
    issue_assignees_set(issue=issues[0], user=maintainer, assignees=[reporter])
    issue_labels_set(issue=issues[1], user=maintainer, labels=[billing])
    issue_close(issue=issues[1], user=maintainer)
    EmailParticipant.objects.create(issue=issues[2], email=CUSTOMER)
    return issues


def iids(response) -> list[int]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content
    return [issue["iid"] for issue in response.json()]


def test_project_by_id_and_by_url_encoded_path(api, project) -> None:
    by_path = api.get("/projects/acme%2Fgame").json()
    by_id = api.get(f"/projects/{project.pk}").json()
    assert by_path == by_id
    assert by_id["path_with_namespace"] == "acme/game"
    assert by_id["namespace"]["full_path"] == "acme"
    assert api.get("/projects/acme%2Fnope").status_code == 404


def test_projects_list_holds_what_the_user_can_read(api, project, reporter) -> None:
    other = GroupFactory(path="other")
    ProjectFactory(group=other, path="secret")
    ProjectFactory(group=other, path="open", visibility="public")
    ProjectFactory(group=other, path="inside", visibility="internal")
    listed = {p["path_with_namespace"] for p in api.get("/projects").json()}
    assert listed == {"acme/game", "other/open", "other/inside"}
    mine = {p["path_with_namespace"] for p in api.get("/projects", membership="true").json()}
    assert mine == {"acme/game"}
    anonymous = Client().get("/api/v4/projects").json()
    assert {p["path_with_namespace"] for p in anonymous} == {"other/open"}


def test_issue_list_filters(api, project, tracker, reporter) -> None:
    path = f"/projects/{project.pk}/issues"
    assert iids(api.get(path)) == [5, 4, 3, 2, 1]  # all states, newest first
    assert iids(api.get(path, state="opened")) == [5, 4, 3, 1]
    assert iids(api.get(path, state="closed")) == [2]
    assert iids(api.get(path, labels="bug")) == [1]
    assert iids(api.get(path, labels="bug,billing")) == []  # all of them
    assert iids(api.get(path, labels="None")) == [5, 4, 3]
    assert iids(api.get(path, labels="Any")) == [2, 1]
    assert iids(api.get(path, assignee_username="bob")) == [1]
    assert iids(api.get(path, assignee_id=str(reporter.pk))) == [1]
    assert iids(api.get(path, assignee_id="None")) == [5, 4, 3, 2]
    assert iids(api.get(path, assignee_id="Any")) == [1]
    assert iids(api.get(path, author_username="bob")) == [2]
    assert iids(api.get(path, scope="created_by_me")) == [2]
    assert iids(api.get(path, scope="assigned_to_me")) == [1]
    assert iids(api.get(path, author_id=str(reporter.pk))) == [2]
    assert iids(api.get(path, confidential="true")) == [3]
    assert iids(api.get(path, search="invoice")) == [2]
    assert iids(api.get(path, sort="asc")) == [1, 2, 3, 4, 5]
    Issue.objects.filter(iid=4).update(updated_at=timezone.now() + timedelta(hours=1))
    assert iids(api.get(path, order_by="updated_at"))[0] == 4
    later = (timezone.now() + timedelta(minutes=30)).isoformat()
    assert iids(api.get(path, updated_after=later)) == [4]
    assert 4 not in iids(api.get(path, updated_before=later))
    Issue.objects.filter(iid=1).update(created_at=timezone.now() - timedelta(days=3))
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert iids(api.get(path, created_before=yesterday)) == [1]
    assert 1 not in iids(api.get(path, created_after=yesterday))
    assert iids(api.client.get(f"/api/v4{path}?iids[]=1&iids[]=4", headers=api._headers())) == [
        4,
        1,
    ]


@pytest.mark.parametrize(
    "params",
    [{"state": "open"}, {"sort": "sideways"}, {"scope": "mine"}, {"created_after": "last tuesday"},
     {"per_page": "0"}, {"page": "x"}, {"assignee_id": "bob"}, {"confidential": "maybe"}],
)  # fmt: skip
def test_issue_list_refuses_bad_parameters(api, project, params) -> None:
    response = api.get(f"/projects/{project.pk}/issues", **params)
    assert response.status_code == 400
    assert list(response.json()["message"]) == list(params)


def test_confidential_issues_are_not_listed_nor_found_below_reporter(project, tracker, guest):
    guest_api = Api(guest)
    assert 3 not in iids(guest_api.get(f"/projects/{project.pk}/issues"))
    assert iids(guest_api.get(f"/projects/{project.pk}/issues", confidential="true")) == []
    assert guest_api.get(f"/projects/{project.pk}/issues/3").status_code == 404
    assert guest_api.get(f"/projects/{project.pk}/issues/1").status_code == 200
    # A requester search finds nothing below Reporter: the list does not tell who wrote in.
    assert (
        iids(guest_api.get(f"/projects/{project.pk}/issues", search=f"requester:{CUSTOMER}")) == []
    )


def test_pagination_headers_like_gitlab(api, project, tracker) -> None:
    response = api.get(f"/projects/{project.pk}/issues", per_page="2", page="2")
    assert iids(response) == [3, 2]
    assert response["X-Total"] == "5"
    assert response["X-Total-Pages"] == "3"
    assert response["X-Page"] == "2"
    assert response["X-Per-Page"] == "2"
    assert response["X-Next-Page"] == "3"
    assert response["X-Prev-Page"] == "1"
    links = dict(
        (part.split('; rel="')[1].rstrip('"'), part.split(">")[0].lstrip("<"))
        for part in response["Link"].split(", ")
    )
    assert set(links) == {"first", "prev", "next", "last"}
    assert "page=3" in links["next"]
    assert "per_page=2" in links["next"]
    assert iids(api.client.get(links["next"], headers=api._headers())) == [1]
    last = api.get(f"/projects/{project.pk}/issues", per_page="2", page="3")
    assert last["X-Next-Page"] == ""
    assert 'rel="next"' not in last["Link"]
    capped = api.get(f"/projects/{project.pk}/issues", per_page="1000")
    assert capped["X-Per-Page"] == "100"


def _queries(django_assert_num_queries, count: int, call) -> Any:  # type: ignore[no-untyped-def]
    with django_assert_num_queries(count):
        return call()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("issues", 7), ("notes", 8), ("participants", 8), ("projects", 4), ("inbound", 5)],
)
def test_each_list_costs_the_same_queries_whatever_the_page_size(
    project, tracker, maintainer, django_assert_num_queries, name, expected
) -> None:
    """Authentication (the token with its user: 1); the project and the caller's role (2; for
    the project list, the memberships: 1); the issue with its labels and assignees (3, notes
    and participants); then the count and the page, and what the rows need in bulk (labels
    and assignees: 2, issues). The same for 1 row as for 20."""
    issue = tracker[2]
    for n in range(6):
        note_create(issue=issue, author=maintainer, body=f"note {n}", internal=n % 2 == 0)
        EmailParticipant.objects.create(issue=issue, email=f"cc{n}@customer.example")
        InboundMessage.objects.create(transport="t", raw=b"x", size=1, project=project,
                                      status="done", outcome="ignored", issue=issue)  # fmt: skip
    for n in range(4):
        ProjectFactory(group=project.group, path=f"more{n}").memberships.create(
            user=maintainer, role=40
        )
    maintainer_api = Api(maintainer)
    maintainer_api.get("/user")  # its last-used time is written: the next minute, no more
    url = {
        "issues": f"/projects/{project.pk}/issues",
        "notes": f"/projects/{project.pk}/issues/{issue.iid}/notes",
        "participants": f"/projects/{project.pk}/issues/{issue.iid}/participants",
        "projects": "/projects",
        "inbound": f"/projects/{project.pk}/inbound_emails",
    }[name]
    small = _queries(django_assert_num_queries, expected,
                     lambda: maintainer_api.get(url, per_page="1"))  # fmt: skip
    large = _queries(django_assert_num_queries, expected,
                     lambda: maintainer_api.get(url, per_page="20"))  # fmt: skip
    assert len(small.json()) == 1
    assert len(large.json()) >= 5


def test_update_state_labels_assignees_confidential_in_one_request(
    api, project, tracker, reporter, maintainer
) -> None:
    issue = tracker[3]
    response = api.send(
        "put",
        f"/projects/{project.pk}/issues/{issue.iid}",
        {"state_event": "close", "labels": "bug,billing", "assignee_ids": [maintainer.pk],
         "confidential": True},
    )  # fmt: skip
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "closed"
    assert body["closed_by"]["username"] == "bob"
    assert body["labels"] == ["billing", "bug"]
    assert [a["username"] for a in body["assignees"]] == ["mia"]
    assert body["confidential"] is True
    # Each change left its system note, as on the issue page.
    notes = list(Note.objects.filter(issue=issue, system=True).values_list("body", flat=True))
    assert "closed" in notes
    assert "made the issue confidential" in notes
    response = api.send(
        "put", f"/projects/{project.pk}/issues/{issue.iid}",
        {"add_labels": "", "remove_labels": "bug", "state_event": "reopen"},
    )  # fmt: skip
    assert response.json()["labels"] == ["billing"]
    as_list = api.send("put", f"/projects/{project.pk}/issues/{issue.iid}", {"labels": ["bug"]})
    assert as_list.json()["labels"] == ["bug"]
    assert response.json()["state"] == "opened"


def test_a_refused_change_undoes_the_others(api, project, tracker, guest) -> None:
    issue = tracker[3]
    response = api.send(
        "put", f"/projects/{project.pk}/issues/{issue.iid}",
        {"labels": "bug", "assignee_ids": [guest.pk]},  # guests cannot be assigned
    )  # fmt: skip
    assert response.status_code == 400
    assert list(Issue.objects.get(pk=issue.pk).labels.all()) == []
    unknown = api.send("put", f"/projects/{project.pk}/issues/{issue.iid}", {"labels": "nope"})
    assert unknown.status_code == 400
    assert "nope" in str(unknown.json())
    assert api.send("put", f"/projects/{project.pk}/issues/{issue.iid}", {}).status_code == 400


def test_move_to_another_project(api, project, tracker, reporter) -> None:
    target = ProjectFactory(group=project.group, path="other", service_desk_enabled=True)
    outside = ProjectFactory(group=project.group, path="outside")
    path = f"/projects/{project.pk}/issues/{tracker[2].iid}/move"
    assert api.send("post", path, {"to_project_id": outside.pk}).status_code == 404
    member_guest = ProjectFactory(group=project.group, path="guested")
    member_guest.memberships.create(user=reporter, role=10)
    assert api.send("post", path, {"to_project_id": member_guest.pk}).status_code == 403
    target.memberships.create(user=reporter, role=20)
    response = api.send("post", path, {"to_project_id": target.pk})
    assert response.status_code == 201, response.content
    copy = response.json()
    assert copy["project_id"] == target.pk
    assert copy["external_author"] == CUSTOMER
    assert Issue.objects.get(pk=tracker[2].pk).moved_to_id == copy["id"]
    original = api.get(f"/projects/{project.pk}/issues/{tracker[2].iid}").json()
    assert original["moved_to_id"] == copy["id"]
    assert original["state"] == "closed"


def test_notes_list_and_internal_notes(api, project, tracker, guest) -> None:
    issue = tracker[0]
    path = f"/projects/{project.pk}/issues/{issue.iid}/notes"
    public = api.send("post", path, {"body": "Looking into it"})
    internal = api.send("post", path, {"body": "Engine team knows", "internal": True})
    assert public.status_code == internal.status_code == 201
    assert internal.json()["internal"] is True
    assert internal.json()["confidential"] is True
    bodies = [n["body"] for n in api.get(path).json() if not n["system"]]
    assert bodies == ["Looking into it", "Engine team knows"]
    guest_api = Api(guest)
    guest_bodies = [n["body"] for n in guest_api.get(path).json() if not n["system"]]
    assert guest_bodies == ["Looking into it"]
    assert guest_api.send("post", path, {"body": "x", "internal": True}).status_code == 403
    assert guest_api.send("post", path, {"body": "Me too"}).status_code == 201
    issue_json = api.get(f"/projects/{project.pk}/issues/{issue.iid}").json()
    assert issue_json["user_notes_count"] == 3
    assert (
        guest_api.get(f"/projects/{project.pk}/issues/{issue.iid}").json()["user_notes_count"] == 2
    )


def test_quick_actions_in_a_note_run_for_those_who_may(api, project, tracker) -> None:
    issue = tracker[3]
    path = f"/projects/{project.pk}/issues/{issue.iid}/notes"
    response = api.send("post", path, {"body": "/label ~bug\n/close"})
    assert response.status_code == 202
    assert Issue.objects.get(pk=issue.pk).state == "closed"
    assert [label.title for label in Issue.objects.get(pk=issue.pk).labels.all()] == ["bug"]


def test_participants_add_list_remove(api, project, tracker, guest) -> None:
    issue = tracker[2]
    path = f"/projects/{project.pk}/issues/{issue.iid}/participants"
    added = api.send("post", path, {"email": "boss@customer.example"})
    assert added.status_code == 201
    assert added.json()["state"] == "subscribed"
    assert {p["email"] for p in api.get(path).json()} == {CUSTOMER, "boss@customer.example"}
    assert api.send("post", path, {"email": "boss@customer.example"}).status_code == 400
    assert api.send("post", path, {"email": "not an address"}).status_code == 400
    gone = api.send("delete", f"{path}/{added.json()['id']}")
    assert gone.status_code == 204
    assert {p["email"] for p in api.get(path).json()} == {CUSTOMER}
    assert api.send("delete", f"{path}/{added.json()['id']}").status_code == 404
    # No email is sent for a manual add (as in GitLab and the issue page).
    assert not OutboundEmail.objects.exists()


def test_service_desk_settings_read_and_partial_update(project, tracker, reporter, maintainer):
    path = f"/projects/{project.pk}/service_desk"
    shown = Api(reporter).get(path).json()
    assert shown["service_desk_enabled"] is True
    assert shown["service_desk_address"].startswith("incoming+acme-game-")
    assert Api(reporter).send("put", path, {"outgoing_name": "x"}).status_code == 403
    maintainer_api = Api(maintainer)
    response = maintainer_api.send(
        "put", path, {"outgoing_name": "ACME Help", "project_key": "help"}
    )
    assert response.status_code == 200, response.content
    setting = ServiceDeskSetting.objects.get(project=project)
    assert (setting.outgoing_name, setting.project_key) == ("ACME Help", "help")
    assert setting.service_desk_enabled
    assert setting.tickets_confidential_by_default
    bad = maintainer_api.send("put", path, {"project_key": "Not A Key"})
    assert bad.status_code == 400
    assert "project_key" in bad.json()["message"]
    assert maintainer_api.send("put", path, {"description_template_id": 999}).status_code == 400


def test_inbound_ledger_list_and_detail_without_raw(project, tracker, maintainer) -> None:
    raw = b"From: jake@customer.example\r\nSubject: Help\r\n\r\nSECRET-BODY"
    email = InboundMessage.objects.create(
        transport="imap", raw=raw, size=len(raw), project=project, status="done",
        outcome="issue_created", from_address=CUSTOMER, subject="Help", issue=tracker[2],
        decision={"rule": "new issue"},
    )  # fmt: skip
    InboundMessage.objects.create(transport="imap", raw=b"x", size=1, status="done",
                                  outcome="rejected")  # no project: not in this ledger  # fmt: skip
    api = Api(maintainer)
    listed = api.get(f"/projects/{project.pk}/inbound_emails")
    assert [row["id"] for row in listed.json()] == [email.pk]
    assert listed.json()[0]["issue_iid"] == tracker[2].iid
    assert api.get(f"/projects/{project.pk}/inbound_emails", outcome="rejected").json() == []
    detail = api.get(f"/projects/{project.pk}/inbound_emails/{email.pk}")
    assert detail.json()["decision"] == {"rule": "new issue"}
    assert b"SECRET-BODY" not in listed.content + detail.content


def test_ticket_for_a_customer_is_made_as_the_mailroom_makes_one(api, project, maintainer):
    template = DescriptionTemplate.objects.create(project=project, name="T", content="## Order")
    ServiceDeskSetting.objects.filter(project=project).update(
        tickets_confidential_by_default=False, description_template=template
    )
    response = api.send(
        "post",
        f"/projects/{project.pk}/issues",
        {"title": "Where is it?", "description": "Phoned in.", "service_desk_email": CUSTOMER},
    )
    assert response.status_code == 201, response.content
    ticket = Issue.objects.get(pk=response.json()["id"])
    assert ticket.author.is_bot
    assert ticket.external_author == CUSTOMER
    assert ticket.confidential is False  # the project's setting, as for an email
    assert ticket.description == "Phoned in.\n\n## Order"
    assert ticket.last_public_by == "customer"  # waits for the team from the start
    assert list(ticket.email_participants.values_list("email", flat=True)) == [CUSTOMER]
    opened = Note.objects.get(issue=ticket, system=True)
    assert (opened.body, opened.internal, opened.author.username) == (
        f"opened this Service Desk issue for {CUSTOMER}",
        True,
        "bob",
    )
    assert not OutboundEmail.objects.exclude(kind="team").exists()  # no thank-you unless asked


def test_ticket_for_a_customer_needs_service_desk_on_and_an_address(api, project) -> None:
    path = f"/projects/{project.pk}/issues"
    bad = api.send("post", path, {"title": "x", "service_desk_email": "not-an-address"})
    assert bad.status_code == 400
    ServiceDeskSetting.objects.filter(project=project).update(service_desk_enabled=False)
    off = api.send("post", path, {"title": "x", "service_desk_email": CUSTOMER})
    assert off.status_code == 400
    assert "Service Desk is off" in str(off.json()["message"])
    assert not Issue.objects.exists()


def test_below_reporter_an_issue_is_created_plain(project, guest) -> None:
    guest_api = Api(guest)
    path = f"/projects/{project.pk}/issues"
    created = guest_api.send("post", path, {"title": "Colour blind mode", "description": "x"})
    assert created.status_code == 201
    assert created.json()["author"]["username"] == "carol"
    for field, value in (("confidential", True), ("labels", "bug"),
                         ("service_desk_email", CUSTOMER)):  # fmt: skip
        refused = guest_api.send("post", path, {"title": "x", field: value})
        assert refused.status_code == 403, field
    assert Issue.objects.count() == 1


def test_a_move_to_a_private_project_does_not_tell_its_path(project, reporter, guest) -> None:
    """As on the issue page: the move note and ``moved_to_id`` name the copy only to those
    who may read it."""
    project.visibility = "public"
    project.save()
    hidden = ProjectFactory(group=GroupFactory(path="hidden"), path="skunkworks")
    hidden.memberships.create(user=reporter, role=20)
    issue = IssueFactory(project=project, author=reporter, title="Moving")
    Api(reporter).send("post", f"/projects/{project.pk}/issues/{issue.iid}/move",
                       {"to_project_id": hidden.pk})  # fmt: skip
    base = f"/api/v4/projects/{project.pk}/issues/{issue.iid}"
    for who, client, headers in (
        ("guest", Client(), Api(guest)._headers()),
        ("anonymous", Client(), {}),
    ):
        found = client.get(base, headers=headers).json()
        notes = client.get(f"{base}/notes", headers=headers).content.decode()
        listed = client.get(f"/api/v4/projects/{project.pk}/issues", headers=headers).content
        assert found["moved_to_id"] is None, who
        assert "skunkworks" not in notes, who
        assert b"skunkworks" not in listed, who
        assert "moved this issue to another project" in notes, who
    reporter_api = Api(reporter)
    notes = [
        n["body"]
        for n in reporter_api.get(f"/projects/{project.pk}/issues/{issue.iid}/notes").json()
    ]
    assert "moved this issue to hidden/skunkworks#1" in notes
    assert reporter_api.get(f"/projects/{project.pk}/issues/{issue.iid}").json()["moved_to_id"]
