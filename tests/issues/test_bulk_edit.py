"""The tracker's bulk edit: one action on many issues, each through the issue page's service
(its system note, its notification), the issues one may not change skipped, at most
BULK_EDIT_MAX per request."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.selectors import support_bot
from issues import views
from issues.models import Issue, Label, Note
from issues.services import issue_close
from notifications.models import Event
from projects.models import Project, Visibility
from tests.factories import IssueFactory, LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def bulk_url(project: Project, query: str = "") -> str:
    url = reverse("issue_bulk", args=[project.full_path])
    return f"{url}?{query}" if query else url


def list_url(project: Project, query: str = "") -> str:
    url = reverse("issue_list", args=[project.full_path])
    return f"{url}?{query}" if query else url


def flashes(client, response) -> list[str]:  # type: ignore[no-untyped-def]
    """The request's flash messages; they are taken, as the list page would show them."""
    shown = [str(message) for message in get_messages(response.wsgi_request)]
    client.cookies.pop("messages", None)
    return shown


def system_notes(issue: Issue) -> list[str]:
    return list(Note.objects.filter(issue=issue, system=True).values_list("body", flat=True))


def fresh(issue: Issue) -> Issue:
    return Issue.objects.get(pk=issue.pk)


@pytest.fixture
def labels(project) -> dict[str, Label]:
    return {title: LabelFactory(project=project, title=title) for title in ["bug", "billing"]}


@pytest.fixture
def three(project, developer) -> list[Issue]:
    return [IssueFactory(project=project, author=developer, title=f"T{n}") for n in range(3)]


def test_bulk_close_closes_each_issue_with_its_note_and_comes_back_to_the_list(
    client, project, reporter, three
) -> None:
    client.force_login(reporter)
    iids = [issue.iid for issue in three]
    response = client.post(
        bulk_url(project, "label=bug&sort=created_asc"), {"action": "close", "iid": iids}
    )
    assert response.status_code == 302
    assert response["Location"] == list_url(project, "label=bug&sort=created_asc")
    assert flashes(client, response) == ["3 issues closed."]
    for issue in three:
        assert fresh(issue).state == Issue.State.CLOSED
        assert fresh(issue).closed_by == reporter
        assert system_notes(issue) == ["closed"]
    assert Event.objects.filter(kind=Event.Kind.STATE, issue__in=three).count() == 3


def test_bulk_reopen_says_which_were_already_open(client, project, reporter, three) -> None:
    issue_close(issue=three[0], user=reporter)
    issue_close(issue=three[1], user=reporter)
    client.force_login(reporter)
    response = client.post(bulk_url(project), {"action": "reopen", "iid": [i.iid for i in three]})
    assert flashes(client, response) == ["2 issues reopened (1 already was)."]
    assert {fresh(i).state for i in three} == {Issue.State.OPENED}
    assert system_notes(three[2]) == []


def test_bulk_add_and_remove_labels_keep_the_other_labels(
    client, project, reporter, labels, three
) -> None:
    other = LabelFactory(project=project, title="question")
    three[0].labels.add(other, labels["bug"])
    client.force_login(reporter)
    response = client.post(
        bulk_url(project),
        {"action": "add_labels", "iid": [i.iid for i in three],
         "labels": [labels["bug"].pk, labels["billing"].pk]},
    )  # fmt: skip
    assert flashes(client, response) == ["3 issues labelled."]
    titles = sorted(fresh(three[0]).labels.values_list("title", flat=True))
    assert titles == ["billing", "bug", "question"]
    assert system_notes(three[0]) == ["added label billing"]
    assert system_notes(three[1]) == ["added labels billing, bug"]

    response = client.post(
        bulk_url(project),
        {"action": "remove_labels", "iid": [three[0].iid, three[1].iid],
         "labels": [labels["bug"].pk]},
    )  # fmt: skip
    assert flashes(client, response) == ["2 issues unlabelled."]
    assert sorted(fresh(three[0]).labels.values_list("title", flat=True)) == [
        "billing",
        "question",
    ]
    assert system_notes(three[1])[-1] == "removed label bug"


def test_bulk_assign_and_unassign(client, project, reporter, developer, three) -> None:
    client.force_login(reporter)
    iids = [i.iid for i in three]
    response = client.post(
        bulk_url(project), {"action": "assign", "iid": iids, "assignees": [developer.pk]}
    )
    assert flashes(client, response) == ["3 issues assigned."]
    assert [list(fresh(i).assignees.all()) for i in three] == [[developer]] * 3
    assert system_notes(three[0]) == [f"assigned to @{developer.username}"]
    assert Event.objects.filter(kind=Event.Kind.ASSIGNED, issue__in=three).count() == 3

    three[0].assignees.add(reporter)
    response = client.post(
        bulk_url(project), {"action": "unassign", "iid": iids[:1], "assignees": [developer.pk]}
    )
    assert flashes(client, response) == ["1 issue unassigned."]
    assert list(fresh(three[0]).assignees.all()) == [reporter]  # only the one chosen
    response = client.post(bulk_url(project), {"action": "unassign", "iid": iids})
    assert flashes(client, response) == ["3 issues unassigned."]  # nobody chosen: everyone
    assert [fresh(i).assignees.count() for i in three] == [0, 0, 0]


def test_a_guest_cannot_be_assigned_in_bulk(client, project, reporter, guest, three) -> None:
    client.force_login(reporter)
    response = client.post(
        bulk_url(project), {"action": "assign", "iid": [three[0].iid], "assignees": [guest.pk]}
    )
    assert response.status_code == 302
    assert flashes(client, response)[0].startswith("Nothing changed:")
    assert fresh(three[0]).assignees.count() == 0


def test_bulk_confidentiality_skips_service_desk_issues_of_a_public_project(
    client, project, reporter, three
) -> None:
    project.visibility = Visibility.PUBLIC
    project.save()
    ticket = IssueFactory(project=project, author=support_bot(), title="Ticket",
                          confidential=True, external_author="jake@customer.example")  # fmt: skip
    client.force_login(reporter)
    iids = [ticket.iid, *(i.iid for i in three)]
    response = client.post(bulk_url(project), {"action": "confidential", "iid": iids})
    assert flashes(client, response) == ["3 issues made confidential (1 already was)."]
    response = client.post(bulk_url(project), {"action": "not_confidential", "iid": iids})
    assert flashes(client, response) == [
        "3 issues made visible to everyone.",
        f"1 issue skipped (#{ticket.iid}): Service Desk issues in public projects stay "
        "confidential.",
    ]
    assert fresh(ticket).confidential is True
    assert [fresh(i).confidential for i in three] == [False] * 3
    assert system_notes(three[0]) == [
        "made the issue confidential",
        "made the issue visible to everyone",
    ]
    assert system_notes(ticket) == []


@pytest.mark.parametrize("persona", ["guest", "outsider"])
def test_below_reporter_bulk_edit_is_refused_and_nothing_changes(
    client, request, project, three, persona
) -> None:
    """As the issue page's triage POSTs: 403 for those who can read the project, 404 for
    those who cannot."""
    client.force_login(request.getfixturevalue(persona))
    response = client.post(bulk_url(project), {"action": "close", "scope": "all"})
    assert response.status_code == (403 if persona == "guest" else 404)
    assert {fresh(i).state for i in three} == {Issue.State.OPENED}


def test_anonymous_visitors_are_sent_to_log_in(client, project, three) -> None:
    response = client.post(bulk_url(project), {"action": "close", "iid": [three[0].iid]})
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert fresh(three[0]).state == Issue.State.OPENED


def test_the_tracker_offers_bulk_edit_to_reporters_only(client, project, reporter, guest, three):
    client.force_login(reporter)
    html = client.get(list_url(project, "sort=created_asc&state=all")).content.decode()
    assert 'action="/acme/game/-/issues/bulk/?sort=created_asc&amp;state=all"' in html
    html = client.get(list_url(project, "label=x")).content.decode()
    assert "bulk-check" not in html  # label x matches nothing: no rows, no form
    html = client.get(list_url(project)).content.decode()
    assert html.count('data-testid="bulk-check"') == 3
    assert "All 3 matching the filters" in html
    client.force_login(guest)
    html = client.get(list_url(project)).content.decode()
    assert "bulk-check" not in html
    assert "/-/issues/bulk/" not in html


def test_only_this_projects_issues_are_touched(client, project, reporter, three) -> None:
    """Numbers are the project's own: another project's issue with the same number stays as
    it is, and a number nobody has is left out."""
    elsewhere = ProjectFactory(group=project.group, path="other")
    twin = IssueFactory(project=elsewhere, title="Twin")
    assert twin.iid == three[0].iid
    client.force_login(reporter)
    response = client.post(bulk_url(project), {"action": "close", "iid": [three[0].iid, 999999]})
    assert flashes(client, response) == ["1 issue closed."]
    assert fresh(twin).state == Issue.State.OPENED


def test_all_matching_mode_follows_the_filters_of_the_query_string(
    client, project, reporter, labels, three
) -> None:
    three[0].labels.add(labels["bug"])
    three[1].labels.add(labels["bug"])
    client.force_login(reporter)
    response = client.post(
        bulk_url(project, "label=bug"), {"action": "close", "scope": "all", "iid": [three[2].iid]}
    )
    assert flashes(client, response) == ["2 issues closed."]
    assert [fresh(i).state for i in three] == ["closed", "closed", "opened"]


def test_page_mode_takes_every_row_of_the_page(client, project, reporter, three) -> None:
    client.force_login(reporter)
    response = client.post(
        bulk_url(project),
        {"action": "close", "scope": "page", "page_iid": [three[0].iid, three[1].iid]},
    )
    assert flashes(client, response) == ["2 issues closed."]


def test_nothing_ticked_or_no_label_chosen_changes_nothing(client, project, reporter, three):
    client.force_login(reporter)
    response = client.post(bulk_url(project, "state=all"), {"action": "close"})
    assert response["Location"] == list_url(project, "state=all")
    assert flashes(client, response) == ["Nothing changed: Tick the issues to change first."]
    response = client.post(bulk_url(project), {"action": "add_labels", "iid": [three[0].iid]})
    assert flashes(client, response) == ["Nothing changed: Choose the labels to add or remove."]
    response = client.post(bulk_url(project), {"action": "explode", "iid": [three[0].iid]})
    assert flashes(client, response)[0].startswith("Nothing changed:")
    assert {fresh(i).state for i in three} == {Issue.State.OPENED}


def test_at_most_the_cap_per_request_and_it_says_so(
    client, project, reporter, three, monkeypatch
) -> None:
    monkeypatch.setattr(views, "BULK_EDIT_MAX", 2)
    client.force_login(reporter)
    response = client.post(bulk_url(project, "sort=created_asc"), {"action": "close",
                                                                    "scope": "all"})  # fmt: skip
    assert flashes(client, response) == [
        "2 issues closed.",
        "Only the first 2 of 3 issues were edited (at most 2 at a time): do it again for the rest.",
    ]
    assert [fresh(i).state for i in three] == ["closed", "closed", "opened"]  # in list order
    response = client.post(bulk_url(project), {"action": "close", "scope": "all"})
    assert flashes(client, response) == ["1 issue closed."]


def test_one_action_is_one_transaction(client, project, reporter, three, monkeypatch) -> None:
    """A failure half-way leaves every issue as it was."""
    from issues import services

    calls = []
    real = services._issue_set_state

    def fails_on_the_second(**kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["issue"].pk)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(services, "_issue_set_state", fails_on_the_second)
    client.force_login(reporter)
    client.raise_request_exception = False
    response = client.post(bulk_url(project), {"action": "close", "iid": [i.iid for i in three]})
    assert response.status_code == 500
    assert {fresh(i).state for i in three} == {Issue.State.OPENED}
    assert not Note.objects.filter(issue__in=three, system=True).exists()


def queries_for_bulk_close(client, project: Project, issues: list[Issue]) -> int:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        response = client.post(
            bulk_url(project), {"action": "close", "iid": [i.iid for i in issues]}
        )
    assert flashes(client, response) == [f"{len(issues)} issues closed."]
    return len(captured)


def test_bulk_close_costs_a_fixed_number_of_queries_per_issue(client, project, reporter):
    """Each issue goes through its service (lock, update, note, notifications, webhooks):
    queries grow with the issues, by the same few for each, never with the size of the
    project."""
    client.force_login(reporter)
    small = [IssueFactory(project=project, author=reporter) for _ in range(5)]
    large = [IssueFactory(project=project, author=reporter) for _ in range(15)]
    five = queries_for_bulk_close(client, project, small)
    fifteen = queries_for_bulk_close(client, project, large)
    per_issue = (fifteen - five) / 10
    assert per_issue == int(per_issue)  # exactly the same for each issue
    # Measured: 11 per issue (the close service's own, one of them the project's webhooks, one
    # the ticket's response clock), 10 for the request itself.
    assert per_issue <= 11, per_issue
    assert five - 5 * per_issue <= 10
