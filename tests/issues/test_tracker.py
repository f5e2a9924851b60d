"""The issue tracker (a project's issue list): tabs, the Service Desk view, filters, search,
sorting, pages, who sees what, and a fixed number of queries per page."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import support_bot
from issues import filters as filters_module
from issues.filters import IssueFilters
from issues.models import Issue, Label, Note
from issues.services import issue_close, issue_iids_allocate, note_create
from projects.models import Project, Role, Visibility
from tests.factories import IssueFactory, LabelFactory, ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def url(project: Project) -> str:
    return reverse("issue_list", args=[project.full_path])


def titles(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [row.issue.title for row in response.context["page"].object_list]


@pytest.fixture
def labels(project) -> dict[str, Label]:
    return {
        title: LabelFactory(project=project, title=title, color=color)
        for title, color in [("bug", "#d9534f"), ("question", "#428bca"), ("billing", "#5cb85c")]
    }


@pytest.fixture
def board(project, labels, reporter, developer) -> dict[str, Issue]:
    """Five issues: three came by email (two confidential), two were written by the team."""
    bot = support_bot()
    crash = IssueFactory(
        project=project,
        author=bot,
        title="Game crashes on start",
        description="Since the update it CRASHES every time.",
        confidential=True,
        external_author="jake@customer.example",
        labels=[labels["bug"]],
        assignees=[developer],
    )
    refund = IssueFactory(
        project=project,
        author=bot,
        title="Refund for a double charge",
        description="Charged twice for the gold pack.",
        confidential=True,
        external_author="finn@customer.example",
        labels=[labels["billing"], labels["question"]],
    )
    username = IssueFactory(
        project=project,
        author=bot,
        title="How do I change my username?",
        description="Is there a way?",
        external_author="marceline@customer.example",
        labels=[labels["question"]],
    )
    colours = IssueFactory(
        project=project,
        author=reporter,
        title="Add a colour-blind mode",
        description="Players keep asking for it.",
        assignees=[developer, reporter],
    )
    # Converted: a team member's issue that was given a requester later.
    converted = IssueFactory(
        project=project,
        author=developer,
        title="Typo in the shop",
        description="The shop says 'Gold Pakc'.",
        external_author="pb@customer.example",
    )
    issue_close(issue=username, user=reporter)
    return {
        "crash": crash,
        "refund": refund,
        "username": username,
        "colours": colours,
        "converted": converted,
    }


# --- tabs, views, filters, search, sorting -----------------------------------------------------


def test_state_tabs_list_and_count_issues(client, project, reporter, board) -> None:
    client.force_login(reporter)
    opened = client.get(url(project))
    assert set(titles(opened)) == {
        "Game crashes on start",
        "Refund for a double charge",
        "Add a colour-blind mode",
        "Typo in the shop",
    }
    counts = opened.context["tracker"].counts
    assert (counts["opened"], counts["closed"], counts["all"]) == (4, 1, 5)
    html = opened.content.decode()
    assert re.search(r'aria-current="page">Open <span class="count"[^>]*>4<', html)
    assert titles(client.get(url(project), {"state": "closed"})) == ["How do I change my username?"]
    assert len(titles(client.get(url(project), {"state": "all"}))) == 5


def test_service_desk_view_shows_issues_that_came_by_email(client, project, reporter, board):
    client.force_login(reporter)
    response = client.get(url(project), {"service_desk": "1", "state": "all"})
    assert set(titles(response)) == {
        "Game crashes on start",
        "Refund for a double charge",
        "How do I change my username?",
        "Typo in the shop",  # a requester makes it a Service Desk issue
    }
    counts = response.context["tracker"].counts
    assert (counts["all"], counts["issues"], counts["service_desk"]) == (4, 5, 4)
    # The state tabs count inside the view; the view links keep the state.
    assert (counts["opened"], counts["closed"]) == (3, 1)
    html = response.content.decode()
    assert 'href="?service_desk=1&amp;state=opened"' in html
    assert 'href="?state=all"' in html  # "Everything" drops the view, keeps the state


def test_filter_by_label_lists_each_issue_once_with_its_labels(
    client, project, reporter, board
) -> None:
    client.force_login(reporter)
    response = client.get(url(project), {"label": "question", "state": "all"})
    assert sorted(titles(response)) == [
        "How do I change my username?",
        "Refund for a double charge",
    ]
    refund = next(r for r in response.context["page"].object_list if r.issue.title.startswith("R"))
    assert [label.title for label in refund.labels] == ["billing", "question"]
    # Each label in a row links to the list filtered by it, keeping the other filters.
    html = client.get(url(project), {"state": "all"}).content.decode()
    assert 'class="label" href="?state=all&amp;label=bug"' in html


def test_several_labels_list_the_issues_with_all_of_them(client, project, reporter, board):
    client.force_login(reporter)
    response = client.get(url(project), {"label": ["question", "billing"], "state": "all"})
    assert titles(response) == ["Refund for a double charge"]
    assert response.context["tracker"].counts["all"] == 1
    assert response.context["filters"].labels == ("question", "billing")
    html = response.content.decode()
    # The first is the select's; the others are ticked boxes; another select adds one more.
    assert '<option value="question" selected>' in html
    assert '<input type="checkbox" name="label" value="billing" checked>' in html
    assert '<label for="id_label_and">And label</label>' in html
    # Blank and repeated values are dropped.
    response = client.get(url(project), {"label": ["bug", "", "bug"], "state": "all"})
    assert response.context["filters"].labels == ("bug",)
    assert titles(response) == ["Game crashes on start"]


def test_label_none_lists_the_issues_without_labels(client, project, reporter, board) -> None:
    client.force_login(reporter)
    response = client.get(url(project), {"label": "None", "state": "all"})
    assert sorted(titles(response)) == ["Add a colour-blind mode", "Typo in the shop"]
    html = response.content.decode()
    assert '<option value="None" selected>No label</option>' in html
    assert "(no such label)" not in html
    assert titles(client.get(url(project), {"label": ["None", "bug"]})) == []


def test_rows_count_comments_and_internal_notes_for_reporters(
    client, project, reporter, guest
) -> None:
    issue = IssueFactory(project=project, title="Counted")
    note_create(issue=issue, author=reporter, body="public one")
    note_create(issue=issue, author=reporter, body="public two")
    note_create(issue=issue, author=reporter, body="team only", internal=True)
    client.force_login(reporter)
    html = client.get(url(project)).content.decode()
    assert re.search(r'2 comments · <span class="internal-count">1 internal</span>', html)
    client.force_login(guest)
    html = client.get(url(project)).content.decode()
    assert re.search(r'data-testid="note-count">2 comments</span>', html)
    assert "internal" not in html.split('data-testid="note-count"')[1][:40]


def test_filters_fold_behind_a_filter_button_that_counts_them(client, project, reporter, board):
    client.force_login(reporter)
    html = client.get(url(project), {"label": ["bug", "question"], "assignee": "none"}).content
    html = html.decode()
    assert '<details class="tracker-more" data-tracker-filters>' in html
    assert re.search(r'data-testid="filter-toggle">Filter <span class="count">3</span>', html)
    assert html.index('id="id_search"') < html.index("data-tracker-filters")


def test_filter_by_author_and_assignee(client, project, reporter, developer, board) -> None:
    client.force_login(reporter)
    by_bot = client.get(url(project), {"author": "support-bot", "state": "all"})
    assert len(titles(by_bot)) == 3
    assert titles(client.get(url(project), {"author": "bob"})) == ["Add a colour-blind mode"]
    assigned_to_dan = titles(client.get(url(project), {"assignee": "dan"}))
    assert sorted(assigned_to_dan) == ["Add a colour-blind mode", "Game crashes on start"]
    assert sorted(titles(client.get(url(project), {"assignee": "none"}))) == [
        "Refund for a double charge",
        "Typo in the shop",
    ]
    row = client.get(url(project), {"assignee": "bob"}).context["page"].object_list[0]
    assert [person.username for person in row.assignees] == ["bob", "dan"]


def test_filter_by_confidentiality(client, project, reporter, board) -> None:
    client.force_login(reporter)
    secret = titles(client.get(url(project), {"confidential": "yes"}))
    assert sorted(secret) == ["Game crashes on start", "Refund for a double charge"]
    public = titles(client.get(url(project), {"confidential": "no"}))
    assert sorted(public) == ["Add a colour-blind mode", "Typo in the shop"]


def test_search_title_and_description_case_insensitively_and_by_number(
    client, project, reporter, board
) -> None:
    client.force_login(reporter)
    assert titles(client.get(url(project), {"search": "crashes every"})) == [
        "Game crashes on start"
    ]
    assert titles(client.get(url(project), {"search": "GOLD PACK"})) == [
        "Refund for a double charge"
    ]
    refund = board["refund"]
    assert titles(client.get(url(project), {"search": f"#{refund.iid}"})) == [refund.title]
    assert titles(client.get(url(project), {"search": "  colour-BLIND "})) == [
        "Add a colour-blind mode"
    ]


def test_filters_combine_and_counts_follow_them(client, project, reporter, board) -> None:
    client.force_login(reporter)
    response = client.get(url(project), {"search": "gold", "label": "billing", "state": "all"})
    assert titles(response) == ["Refund for a double charge"]
    counts = response.context["tracker"].counts
    assert (counts["opened"], counts["closed"], counts["all"]) == (1, 0, 1)
    assert response.context["page"].paginator.count == 1


def test_no_match_says_so_and_offers_to_clear_the_filters(client, project, reporter, board):
    client.force_login(reporter)
    html = client.get(
        url(project), {"search": "nothing like this", "label": "bug", "sort": "created_asc"}
    ).content.decode()
    assert "No issues match these filters." in html
    # "Clear filters" keeps the tab and the order, drops the rest.
    assert '<a href="?sort=created_asc">Clear filters</a>' in html


def test_sort_by_created_and_updated(client, project, reporter) -> None:
    now = timezone.now()
    for name, created, updated in [("a", 3, 1), ("b", 2, 3), ("c", 1, 2)]:
        issue = IssueFactory(project=project, title=name)
        Issue.objects.filter(pk=issue.pk).update(
            created_at=now - timedelta(days=created), updated_at=now - timedelta(hours=updated)
        )
    client.force_login(reporter)
    sorted_by = {
        sort: "".join(titles(client.get(url(project), {"sort": sort})))
        for sort in ["created_desc", "created_asc", "updated_desc", "updated_asc"]
    }
    assert sorted_by == {
        "created_desc": "cba",
        "created_asc": "abc",
        "updated_desc": "acb",
        "updated_asc": "bca",
    }
    assert titles(client.get(url(project))) == list("cba")  # newest first by default
    html = client.get(url(project), {"sort": "updated_desc"}).content.decode()
    assert "· updated <time" in html


def next_link(response, rel: str = "next") -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The query of the page's next (or previous) link."""
    found = re.search(rf'href="\?([^"]*)" rel="{rel}"', response.content.decode())
    assert found, f"no {rel} link"
    return dict(parse_qsl(html.unescape(found[1])))


def test_pages_keep_the_filters(client, project, reporter, labels, monkeypatch) -> None:
    monkeypatch.setattr(filters_module, "PER_PAGE", (2,))
    for i in range(5):
        IssueFactory(project=project, title=f"bug {i}", labels=[labels["bug"]])
    IssueFactory(project=project, title="unlabelled bug")
    client.force_login(reporter)
    params = {"label": "bug", "search": "bug", "sort": "created_asc"}
    first = client.get(url(project), params)
    assert titles(first) == ["bug 0", "bug 1"]
    assert 'rel="prev"' not in first.content.decode()
    second = client.get(url(project), next_link(first))
    assert next_link(first).items() >= params.items()
    assert titles(second) == ["bug 2", "bug 3"]
    third = client.get(url(project), next_link(second))
    assert titles(third) == ["bug 4"]
    assert "5\N{EN DASH}5 of 5" in third.content.decode()
    assert 'rel="next"' not in third.content.decode()
    back = client.get(url(project), next_link(third, "prev"))
    assert titles(back) == ["bug 2", "bug 3"]
    assert "3\N{EN DASH}4 of 5" in back.content.decode()
    assert titles(client.get(url(project), next_link(back, "prev"))) == ["bug 0", "bug 1"]
    # A page number of an old link, or nonsense: the first page, never an error.
    for nonsense in ["3", "x", "a1~x~1", "a1~2020-01-01T00:00:00~1", "b~~"]:
        assert titles(client.get(url(project), {**params, "page": nonsense})) == ["bug 0", "bug 1"]


def test_twenty_rows_a_page_unless_fifty_or_a_hundred_are_asked_for(
    client, project, reporter, labels
) -> None:
    add_issues(project, 55, team=[reporter], labels=[*labels.values()])
    client.force_login(reporter)
    first = client.get(url(project), {"state": "all"})
    assert len(titles(first)) == 20
    assert '<option value="20" selected>20</option>' in first.content.decode()
    assert len(titles(client.get(url(project), {"state": "all", "per_page": "50"}))) == 50
    hundred = client.get(url(project), {"state": "all", "per_page": "100"})
    assert len(titles(hundred)) == 55
    assert 'rel="next"' not in hundred.content.decode()
    for nonsense in ["7", "0", "-1", "1000000", "x"]:
        assert len(titles(client.get(url(project), {"state": "all", "per_page": nonsense}))) == 20
    # The size stays with the next page and is no filter: "Clear filters" keeps it.
    fifty = client.get(url(project), {"state": "all", "per_page": "50", "search": "issue"})
    assert next_link(fifty)["per_page"] == "50"
    assert len(titles(client.get(url(project), next_link(fifty)))) == 5
    assert "per_page=50" in re.search(r'<a href="([^"]*)">Clear filters', fifty.content.decode())[1]


def test_the_page_size_chosen_is_remembered_for_the_next_visit(
    client, project, reporter, labels, django_assert_num_queries
) -> None:
    add_issues(project, 55, team=[reporter], labels=[*labels.values()])
    client.force_login(reporter)
    client.get(url(project), {"per_page": "50"})
    again = client.get(url(project), {"state": "all"})
    assert len(titles(again)) == 50
    assert '<option value="50" selected>50</option>' in again.content.decode()
    assert len(titles(client.get(url(project), {"state": "all", "per_page": "100"}))) == 55
    assert len(titles(client.get(url(project), {"state": "all"}))) == 55
    client.get(url(project), {"per_page": "20"})
    assert len(titles(client.get(url(project), {"state": "all"}))) == 20
    # Remembering costs no query when nothing changes.
    with django_assert_num_queries(EXPECTED_QUERIES["reporter"]):
        client.get(url(project), {"state": "all", "per_page": "20"})
    # Another person's choice is theirs.
    client.force_login(member(project, Role.REPORTER, "petra"))
    assert len(titles(client.get(url(project), {"state": "all"}))) == 20


@pytest.mark.parametrize(
    "sort", ["created_desc", "created_asc", "updated_desc", "updated_asc", "waiting"]
)
def test_next_and_previous_links_walk_every_order_exactly_once(
    client, project, labels, owner, reporter, developer, monkeypatch, sort
) -> None:
    """Keyset pages: forward through every page and back again, each issue once, in the order
    of the whole list (waiting ones first, the others by a NULL last_public_at last)."""
    monkeypatch.setattr(filters_module, "PER_PAGE", (7, 100))
    add_issues(project, 40, team=[owner, reporter, developer], labels=[*labels.values()])
    Issue.objects.filter(project=project, iid__lte=10).update(created_at=timezone.now())  # ties
    client.force_login(reporter)
    params = {"state": "all", "sort": sort}
    whole = client.get(url(project), params)
    everything = titles(client.get(url(project), {**params, "per_page": "100"}))
    assert len(everything) == Issue.objects.filter(project=project).count()
    pages, response = [titles(whole)], whole
    while 'rel="next"' in response.content.decode():
        response = client.get(url(project), next_link(response))
        pages.append(titles(response))
    assert [title for page in pages for title in page] == everything
    backwards = [titles(response)]
    while 'rel="prev"' in response.content.decode():
        response = client.get(url(project), next_link(response, "prev"))
        backwards.append(titles(response))
    assert backwards == pages[::-1]


def test_nonsense_parameters_are_ignored(client, project, reporter, board) -> None:
    client.force_login(reporter)
    response = client.get(
        url(project), {"state": "both", "sort": "random", "confidential": "maybe"}
    )
    assert response.status_code == 200
    filters = response.context["filters"]
    assert (filters.state, filters.sort, filters.confidential) == ("opened", "created_desc", None)
    assert len(titles(response)) == 4


def test_unknown_label_still_filters_and_shows_in_the_form(client, project, reporter, board):
    client.force_login(reporter)
    response = client.get(url(project), {"label": "gone"})
    assert titles(response) == []
    assert '<option value="gone" selected>gone (no such label)</option>' in (
        response.content.decode()
    )


def test_form_has_visible_labels_and_keeps_the_chosen_values(client, project, reporter, board):
    client.force_login(reporter)
    html = client.get(
        url(project), {"label": "bug", "author": "support-bot", "assignee": "none"}
    ).content.decode()
    for field in ["search", "label", "author", "assignee", "confidential", "sort"]:
        assert f'<label for="id_{field}">' in html
        assert f'id="id_{field}"' in html
    assert '<option value="bug" selected>' in html
    assert '<option value="support-bot" selected>' in html
    assert '<option value="none" selected>Nobody</option>' in html


# --- notes, htmx, markup ------------------------------------------------------------------------


def test_note_count_leaves_out_system_notes_and_internal_ones_below_reporter(
    client, project, reporter, guest
) -> None:
    issue = IssueFactory(project=project, title="Counted")
    note_create(issue=issue, author=reporter, body="public one")
    note_create(issue=issue, author=reporter, body="public two")
    note_create(issue=issue, author=reporter, body="team only", internal=True)
    Note.objects.create(issue=issue, author=reporter, body="closed", system=True)

    def count_for(user) -> int:  # type: ignore[no-untyped-def]
        client.force_login(user)
        return client.get(url(project)).context["page"].object_list[0].issue.note_count

    assert count_for(reporter) == 3
    assert count_for(guest) == 2


def test_htmx_gets_only_the_results_and_a_history_restore_the_whole_page(
    client, project, reporter, board
) -> None:
    client.force_login(reporter)
    partial = client.get(url(project), {"search": "refund"}, headers={"HX-Request": "true"})
    html = partial.content.decode()
    assert "<html" not in html
    assert 'data-testid="issue-list"' in html
    assert "Refund for a double charge" in html
    assert "Game crashes" not in html
    assert "HX-Request" in partial["Vary"]
    restore = client.get(
        url(project), headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.content.decode()
    full = client.get(url(project)).content.decode()
    assert 'hx-get="/acme/game/-/issues/"' in full
    assert 'hx-target="#tracker-results"' in full
    assert 'hx-push-url="true"' in full


def test_page_has_no_inline_script_or_event_handlers(client, project, reporter, board) -> None:
    client.force_login(reporter)
    html = client.get(url(project), {"state": "all"}).content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert re.findall(r"\son[a-z]+\s*=", html) == []
    assert "javascript:" not in html


def test_shortcut_help_lists_the_shortcuts(client, project, reporter, board) -> None:
    client.force_login(reporter)
    html = client.get(url(project)).content.decode()
    help_dialog = html[html.index('<dialog id="shortcut-help"') : html.index("</dialog>")]
    for key in ["j", "k", "Enter", "o", "/", "c", "?"]:
        assert f"<kbd>{key}</kbd>" in help_dialog
    assert "data-shortcut-search" in html
    assert html.count("data-issue-row") == 4


# --- empty states -------------------------------------------------------------------------------


def test_empty_project_tells_a_reporter_the_service_desk_address(client, project, reporter):
    client.force_login(reporter)
    response = client.get(url(project))
    html = response.content.decode()
    assert "No issues yet." in html
    address = response.context["service_desk_addresses"][0]
    assert "@" in address
    assert re.search(rf"whatever they send to\s*<code>{re.escape(address)}</code>", html)


def test_empty_project_with_service_desk_off_says_how_to_turn_it_on(
    client, project, reporter
) -> None:
    project.service_desk.service_desk_enabled = False
    project.service_desk.save()
    client.force_login(reporter)
    html = client.get(url(project)).content.decode()
    assert "Service Desk is off for this project" in html
    assert "incoming+" not in html


def test_empty_project_tells_a_guest_no_address(client, project, guest) -> None:
    client.force_login(guest)
    html = client.get(url(project)).content.decode()
    assert "No issues yet." in html
    assert "incoming+" not in html
    assert "Issues appear here when customers email" in html


def test_no_open_issues_points_to_the_others(client, project, reporter) -> None:
    issue_close(issue=IssueFactory(project=project), user=reporter)
    client.force_login(reporter)
    html = client.get(url(project)).content.decode()
    assert "No open issues. Nothing to triage." in html
    assert '<a href="?state=all">See all issues</a>' in html


# --- who sees what ------------------------------------------------------------------------------

PERSONAS = ["owner", "maintainer", "developer", "reporter", "guest", "outsider", "anonymous"]
REPORTER_AND_UP = {"owner", "maintainer", "developer", "reporter"}


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.INTERNAL, Visibility.PUBLIC])
@pytest.mark.parametrize("persona", PERSONAS)
def test_role_matrix(client, request, project, board, persona, visibility) -> None:
    project.visibility = visibility
    project.save()
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(url(project), {"state": "all"})

    can_open = (
        visibility == Visibility.PUBLIC
        or (visibility == Visibility.INTERNAL and persona != "anonymous")
        or persona not in ("outsider", "anonymous")
    )
    if not can_open:
        if persona == "anonymous":
            assert response.status_code == 302
            assert response["Location"].startswith("/login/?next=/acme/game/-/issues/")
        else:
            assert response.status_code == 404
        return
    assert response.status_code == 200
    html = response.content.decode()
    sees_team_things = persona in REPORTER_AND_UP
    shown = set(titles(response))
    assert ("Game crashes on start" in shown) is sees_team_things
    assert ("Refund for a double charge" in shown) is sees_team_things
    assert {"How do I change my username?", "Add a colour-blind mode"} <= shown
    assert ('class="badge confidential"' in html) is sees_team_things
    assert ("marceline@customer.example" in html) is sees_team_things
    assert ("incoming+" in html) is sees_team_things
    assert ('id="id_confidential"' in html) is sees_team_things
    counts = response.context["tracker"].counts
    assert counts["all"] == (5 if sees_team_things else 3)
    # Asking for confidential issues does not show them either.
    asked = client.get(url(project), {"confidential": "yes", "state": "all"})
    assert bool(titles(asked)) is sees_team_things


def test_guest_filter_choices_do_not_reveal_who_works_on_confidential_issues(
    client, project, guest, developer, board
) -> None:
    client.force_login(guest)
    choices = client.get(url(project)).context["tracker"].choices
    # dan is assigned to the confidential crash and to the public colour-blind mode issue.
    assert [p.username for p in choices.assignees] == ["bob", "dan"]
    only_secret = UserFactory(username="zed")
    board["crash"].assignees.add(only_secret)
    choices = client.get(url(project)).context["tracker"].choices
    assert "zed" not in [p.username for p in choices.assignees]
    client.force_login(member(project, Role.REPORTER, "rita"))
    choices = client.get(url(project)).context["tracker"].choices
    assert "zed" in [p.username for p in choices.assignees]


def test_assignee_choices_are_the_people_assigned_in_this_project(
    client, project, reporter, developer, board
) -> None:
    """Someone assigned only in another project, or an author nobody assigns (the Support
    Bot), is not offered; someone assigned here is, whether or not they wrote anything."""
    elsewhere = ProjectFactory(path="elsewhere")
    olga = UserFactory(username="olga")
    IssueFactory(project=elsewhere, author=olga, title="Not here", assignees=[olga])
    client.force_login(reporter)
    choices = client.get(url(project)).context["tracker"].choices
    assert [p.username for p in choices.assignees] == ["bob", "dan"]
    assert support_bot().username in [p.username for p in choices.authors]
    IssueFactory(project=project, author=reporter, title="Now here", assignees=[olga])
    choices = client.get(url(project)).context["tracker"].choices
    assert [p.username for p in choices.assignees] == ["bob", "dan", "olga"]
    assert "olga" not in [p.username for p in choices.authors]


def test_guest_searching_for_a_confidential_issue_finds_nothing(client, project, guest, board):
    client.force_login(guest)
    assert titles(client.get(url(project), {"search": "crashes", "state": "all"})) == []
    crash = board["crash"]
    assert titles(client.get(url(project), {"search": f"#{crash.iid}"})) == []


# --- a fixed number of queries ------------------------------------------------------------------


def add_issues(project: Project, count: int, *, team: list, labels: list[Label]) -> None:
    """``count`` issues, each with labels (but every fifth) and notes (public, internal,
    system) and, but for every fourth, assignees; a third of them Service Desk issues waiting
    for the team, half of those confidential. In bulk: 1 000 through the services would take
    most of a minute."""
    bot = support_bot()
    now = timezone.now()
    iids = issue_iids_allocate(project_id=project.pk, count=count)
    issues = Issue.objects.bulk_create(
        [
            Issue(
                project=project,
                iid=iid,
                title=f"Issue {iid}",
                description="Something is broken.",
                author=bot if iid % 3 == 0 else team[iid % len(team)],
                confidential=iid % 6 == 0,
                external_author=f"customer{iid}@customer.example" if iid % 3 == 0 else "",
                last_public_by="customer" if iid % 3 == 0 else "",
                last_public_at=now - timedelta(minutes=iid) if iid % 3 == 0 else None,
            )
            for iid in iids
        ]
    )
    Issue.labels.through.objects.bulk_create(
        [
            Issue.labels.through(issue_id=issue.pk, label_id=label.pk)
            for issue in issues
            for label in labels[: 1 + issue.iid % len(labels)]
            if issue.iid % 5  # every fifth has none
        ]
    )
    Issue.assignees.through.objects.bulk_create(
        [
            Issue.assignees.through(issue_id=issue.pk, user_id=person.pk)
            for issue in issues
            for person in team[: 1 + issue.iid % len(team)]
            if issue.iid % 4
        ]
    )
    Note.objects.bulk_create(
        [
            Note(issue=issue, author=team[0], body="note", internal=kind == 1, system=kind == 2)
            for issue in issues
            for kind in range(3)
        ]
    )


def queries_for_page(client, project: Project, params: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url(project), params)
    assert response.status_code == 200
    assert response.context["page"].object_list  # rows were rendered
    return len(captured)


# Measured: a signed-in member's page is 9 queries — session, user, project, role; counts; rows;
# their labels and assignees; the labels and the people for the filter form. A search adds one:
# its matches, found once for the counts and the rows. Reporter+ have one more: the people who
# can be assigned, for the bulk edit.
EXPECTED_QUERIES = {"reporter": 10, "guest": 9}


@pytest.mark.parametrize("persona", ["reporter", "guest"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"state": "all", "sort": "updated_desc", "page": "2"},
        {"label": "bug", "search": "issue", "assignee": "alice", "service_desk": "1"},
        {"view": "waiting"},
        {"view": "unassigned", "state": "all", "sort": "waiting"},
        {"label": ["bug", "question"], "state": "all"},
        {"label": "None", "state": "all"},
    ],
    ids=[
        "default",
        "all-sorted-page-2",
        "filtered",
        "waiting",
        "unassigned",
        "two-labels",
        "no-label",
    ],
)
def test_a_page_costs_the_same_queries_for_10_and_1000_issues(
    client, request, project, labels, owner, developer, persona, params
) -> None:
    user = request.getfixturevalue(persona)
    team = [owner, developer, request.getfixturevalue("reporter")]
    client.force_login(user)
    add_issues(project, 10, team=team, labels=[*labels.values()])
    small = queries_for_page(client, project, params)
    add_issues(project, 990, team=team, labels=[*labels.values()])
    assert Issue.objects.filter(project=project).count() >= 1000
    large = queries_for_page(client, project, params)
    assert small == large == EXPECTED_QUERIES[persona] + ("search" in params)


@pytest.mark.parametrize(
    "params",
    [
        {"view": "mine", "state": "all"},
        {"view": "service_desk", "search": "requester:customer3@customer.example issue"},
        {"search": "customer3@customer.example"},
    ],
    ids=["assigned-to-me", "requester-token", "address"],
)
def test_reporter_only_views_cost_the_same_queries_for_10_and_1000_issues(
    client, project, labels, owner, developer, reporter, params
) -> None:
    """'Assigned to me' (a Guest is never assigned) and searching by address (a Guest finds
    nothing: no rows to count)."""
    client.force_login(reporter)
    team = [owner, developer, reporter]
    add_issues(project, 10, team=team, labels=[*labels.values()])
    small = queries_for_page(client, project, params)
    add_issues(project, 990, team=team, labels=[*labels.values()])
    large = queries_for_page(client, project, params)
    # Words cost one query (their matches); a requester: token is a plain condition.
    words = IssueFilters(search=params.get("search", "")).words
    assert small == large == EXPECTED_QUERIES["reporter"] + bool(words)


def test_anonymous_page_of_a_public_project_costs_fixed_queries(
    client, project, labels, owner, reporter
) -> None:
    project.visibility = Visibility.PUBLIC
    project.save()
    add_issues(project, 10, team=[owner, reporter], labels=[*labels.values()])
    small = queries_for_page(client, project, {})
    add_issues(project, 990, team=[owner, reporter], labels=[*labels.values()])
    assert queries_for_page(client, project, {}) == small == 6


# --- SQLite (make run's embedded default) -------------------------------------------------------

SQLITE_SCRIPT = r"""
import io, json
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, setup_test_environment
call_command("migrate", verbosity=0)
call_command("demo", stdout=io.StringIO())
setup_test_environment()
from accounts.models import User
client = Client()
client.force_login(User.objects.get(username="bob"))
from issues.models import Issue
refund = Issue.objects.filter(title__startswith="Refund")
refund.update(external_author_name="Finn Mertens")
def show(params):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/acme/game/-/issues/", params)
    rows = [row.issue.title for row in response.context["page"].object_list]
    print(json.dumps([response.status_code, len(queries), rows]))
for params in [
    {"search": "INVENTORY"},
    {"search": "gold pack", "state": "all"},
    {"label": "question", "state": "all"},
    {"service_desk": "1", "state": "all", "sort": "created_asc"},
    {"assignee": "none", "author": "alice"},
    {"search": "hank", "state": "all"},
    {"search": "finn", "state": "all"},
    {"search": "inven"},
    {"search": "jake@customer.example", "state": "all"},
    {"search": "requester:finn@customer.example", "state": "all"},
    {"search": "(a+)+$ [", "state": "all"},
    {"view": "waiting", "state": "all"},
]:
    show(params)
# The customer page and the issue page's sidebar, whose lookups are a UNION in a subquery.
response = client.get("/-/customers/", {"email": "FINN@customer.example"})
print(json.dumps([response.status_code, [i.title for i in response.context["page"]]]))
response = client.get(refund.get().get_absolute_url())
print(json.dumps([response.status_code, response.context["customer_issues"]]))
refund.update(confidential=False)
client.force_login(User.objects.get(username="carol"))
for params in [
    {"search": "mertens", "state": "all"},
    {"search": "finn@customer.example", "state": "all"},
    {"search": "requester:finn@customer.example", "state": "all"},
]:
    show(params)
"""


def test_the_tracker_works_on_sqlite(tmp_path) -> None:
    scrubbed = ("DATABASE_", "REDIS_", "SERVICEDESK_", "EMAIL_", "SECRET_KEY", "SITE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
    env.update(
        DJANGO_SETTINGS_MODULE="servicedesk.settings",
        SERVICEDESK_VAR_DIR=str(tmp_path),
        DEMO_PASSWORD="embedded-demo-pass",
    )
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_SCRIPT], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads(line) for line in result.stdout.strip().splitlines()] == [
        [200, 11, ["Game crashes when I open the inventory"]],
        [200, 11, ["Refund for a double charge"]],
        [200, 10, ["How do I change my username?"]],
        [
            200,
            10,
            [
                "Game crashes when I open the inventory",
                "Refund for a double charge",
                "How do I change my username?",
            ],
        ],
        [200, 10, ["Add a colour-blind mode"]],
        # Words match at their start: "hank" is not in "Thanks, Jake", "finn" finds Finn's
        # ticket (his name, his address), "inven" the inventory. No match, no counting.
        [200, 7, []],
        [200, 11, ["Refund for a double charge"]],
        [200, 11, ["Game crashes when I open the inventory"]],
        [200, 11, ["Game crashes when I open the inventory"]],
        [200, 10, ["Refund for a double charge"]],
        [200, 7, []],  # regular expression syntax is text like any other
        [200, 10, ["Refund for a double charge"]],  # waiting for us
        [200, ["Refund for a double charge"]],
        [200, []],
        # carol (Guest), the refund made public: his name finds it, his address does not.
        [200, 10, ["Refund for a double charge"]],
        [200, 7, []],
        [200, 6, []],
    ]


def test_full_text_search_stems_words_and_reads_comments_the_viewer_may_see(
    client, project, reporter, guest
) -> None:
    crash = IssueFactory(project=project, author=reporter, title="Game crashes on start",
                         description="It stops.")  # fmt: skip
    refund = IssueFactory(project=project, author=reporter, title="Refund please")
    note_create(issue=refund, author=reporter, body="Customer paid twice via PayPal.")
    note_create(issue=crash, author=reporter, body="Escalated to the engine team", internal=True)
    client.force_login(reporter)

    def found(q: str) -> list[str]:
        return titles(client.get(url(project), {"search": q, "state": "all"}))

    assert found("crashing") == ["Game crashes on start"]  # stemmed: crashing ~ crashes
    assert found("paypal") == ["Refund please"]  # words in comments
    assert found('"paid twice"') == ["Refund please"]  # a phrase
    assert found("engine") == ["Game crashes on start"]  # internal note: Reporter+ only
    client.force_login(guest)
    assert found("engine") == []
    assert found("paypal") == ["Refund please"]


# --- Cached counts ------------------------------------------------------------------------------


def test_cached_counts_follow_every_change_and_are_not_counted_again_until_one(
    client, project, labels, reporter, developer, settings
) -> None:
    from issues.services import issue_assignees_set, issue_create, issue_labels_set

    settings.SERVICEDESK_TRACKER_COUNTS_CACHE_MIN = 1  # every count is cached
    client.force_login(reporter)
    first = issue_create(project=project, author=reporter, title="First")
    issue_create(project=project, author=reporter, title="Second")

    def counts(params: dict[str, str] | None = None) -> tuple[dict[str, int], list[str]]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url(project), params or {})
        return response.context["tracker"].counts, [q["sql"] for q in captured]

    found, _ = counts()
    assert (found["opened"], found["closed"], found["mine"]) == (2, 0, 0)
    again, queries = counts()
    assert again == found
    assert not any('AS "opened"' in sql for sql in queries)  # from the cache
    assert len(queries) == EXPECTED_QUERIES["reporter"]  # the fingerprint instead of the count

    issue_close(issue=first, user=reporter)
    found, queries = counts()
    assert (found["opened"], found["closed"]) == (1, 1)
    assert any('AS "opened"' in sql for sql in queries)

    assert counts({"state": "all"})[0]["mine"] == 0
    issue_assignees_set(issue=first, user=reporter, assignees=[reporter])
    assert counts({"state": "all"})[0]["mine"] == 1
    assert counts({"state": "all", "label": "bug"})[0]["all"] == 0
    issue_labels_set(issue=first, user=reporter, labels=[labels["bug"]])
    assert counts({"state": "all", "label": "bug"})[0]["all"] == 1
    issue_create(project=project, author=developer, title="Third")
    assert counts()[0]["opened"] == 2
