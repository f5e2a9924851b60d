"""The tracker's search stays inside the project: it reads the project's issues and notes only,
finds its matches once per page, and PostgreSQL can answer it from indexes."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from issues.models import Issue, Note
from issues.selectors import issue_search_matches
from issues.services import note_create
from projects.models import Project, Visibility
from tests.factories import IssueFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SEARCH_INDEXES = [
    "issue_title_trgm",
    "issue_description_trgm",
    "issue_search_vector",
    "note_body_trgm",
    "note_search_vector",
]


def url(project: Project) -> str:
    return reverse("issue_list", args=[project.full_path])


def titles(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    return [row.issue.title for row in response.context["page"].object_list]


@pytest.fixture
def elsewhere(project, reporter) -> Project:
    """Another public project of the instance, full of the word "zebra"."""
    other = ProjectFactory(group=project.group, path="zoo", visibility=Visibility.PUBLIC)
    issue = IssueFactory(
        project=other, author=reporter, title="Zebra escaped", description="The zebra is gone."
    )
    note_create(issue=issue, author=reporter, body="Seen a zebra near the gate.")
    note_create(issue=issue, author=reporter, body="Zebra keeper notified.", internal=True)
    return other


# A megabyte of distinct words: its full-text vector would be over PostgreSQL's 1 MB limit
# ("string is too long for tsvector"), so a search that computed it would fail.
HUGE_TEXT = " ".join(f"w{n}x" for n in range(200_000))


def test_text_in_another_project_is_never_read(client, project, reporter, elsewhere) -> None:
    """Another project's issues and notes are neither found nor read: not even a text whose
    vector cannot be computed costs the search anything."""
    flood = IssueFactory(project=elsewhere, author=reporter, title="Log", description=HUGE_TEXT)
    note_create(issue=flood, author=reporter, body=HUGE_TEXT)
    IssueFactory(project=project, author=reporter, title="Add a zebra skin")
    IssueFactory(project=project, author=reporter, title="Horses are too slow")
    client.force_login(reporter)
    for search in ["zebras", "ZEBRA", '"zebra is"', "gate", "keeper", "w199999x", "log"]:
        found = titles(client.get(url(project), {"search": search, "state": "all"}))
        assert not {"Zebra escaped", "Log"} & set(found), search
    response = client.get(url(project), {"search": "zebra"})
    assert titles(response) == ["Add a zebra skin"]
    assert response.context["tracker"].counts["all"] == 1


def test_a_huge_text_is_searched_whole_by_substring(client, project, reporter) -> None:
    """Full-text search reads the first 100 000 characters of a text (the rest cannot always
    be indexed), so a search that finds nothing still works; substrings are found anywhere."""
    assert len(HUGE_TEXT) > 1_000_000
    issue = IssueFactory(project=project, author=reporter, title="Log attached")
    note_create(issue=issue, author=reporter, body=HUGE_TEXT)
    IssueFactory(project=project, author=reporter, title="Crash", description=HUGE_TEXT)
    client.force_login(reporter)
    assert titles(client.get(url(project), {"search": "w199999x"})) == ["Crash", "Log attached"]
    assert titles(client.get(url(project), {"search": "W5X"})) == ["Crash", "Log attached"]
    assert titles(client.get(url(project), {"search": "zebra"})) == []


def _select_blocks(sql: str) -> list[str]:
    return [block for block in re.split(r"\(?\bSELECT\b", sql) if block.strip()]


def test_every_search_subquery_filters_by_the_project(client, project, reporter, elsewhere) -> None:
    IssueFactory(project=project, author=reporter, title="Add a zebra skin")
    client.force_login(reporter)
    with CaptureQueriesContext(connection) as captured:
        assert titles(client.get(url(project), {"search": "zebra"})) == ["Add a zebra skin"]
    searching = [
        block
        for query in captured.captured_queries
        for block in _select_blocks(query["sql"])
        if "ZEBRA" in block.upper()
    ]
    assert searching
    for block in searching:
        assert f'"project_id" = {project.pk}' in block, block


def test_a_search_page_finds_its_matches_once(client, project, reporter, elsewhere) -> None:
    """One query searches; the tab counts and the rows use the ids it found (9 queries for a
    page without a search, test_tracker)."""
    IssueFactory(project=project, author=reporter, title="Add a zebra skin")
    client.force_login(reporter)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url(project), {"search": "zebra"})
    assert titles(response) == ["Add a zebra skin"]
    searching = [q["sql"] for q in captured.captured_queries if "zebra" in q["sql"].lower()]
    assert len(searching) == 1, searching
    assert len(captured) == 10


def test_postgresql_can_answer_the_search_from_its_indexes(project, reporter) -> None:
    """An expression index serves only a query that spells the very same expression: if the
    search's ``icontains`` or full-text vector drifts from migration 0005 by one character,
    the index names disappear from the plan.

    On a project this small the planner rightly reads the project's rows instead; pricing each
    row's text functions as on a large project (and no sequential scans) shows whether it *can*
    use the indexes."""
    quokka = IssueFactory(project=project, author=reporter, title="A quokka in the level")
    issues = Issue.objects.bulk_create(
        Issue(project=project, iid=n, title=f"Issue {n}", description=f"Player {n} is stuck",
              author=reporter)
        for n in range(2, 202)
    )  # fmt: skip
    Note.objects.bulk_create(
        Note(issue=issue, author=reporter, body=f"Asked player {issue.iid}") for issue in issues
    )
    query = issue_search_matches(user=reporter, project=project, search="quokka")
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE issues_issue")
        cursor.execute("ANALYZE issues_note")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL cpu_operator_cost = 1")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert list(query) == [quokka.pk]
    for index in SEARCH_INDEXES:
        assert f"Bitmap Index Scan on {index}" in plan, plan
    assert f"project_id = {project.pk}" in plan
