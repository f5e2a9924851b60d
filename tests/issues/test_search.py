"""The tracker's search stays inside the project: it reads the project's issues and notes only,
finds its matches once per page, and PostgreSQL can answer it from indexes."""

from __future__ import annotations

import re

import hypothesis
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import strategies as st

from accounts.selectors import support_bot
from issues.filters import SEARCH_MAX_LENGTH, IssueFilterForm
from issues.models import EmailParticipant, Issue, Note
from issues.selectors import issue_search_matches
from issues.services import note_create, participant_add
from projects.models import Project, Visibility
from tests.factories import IssueFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SEARCH_INDEXES = [
    "issue_title_trgm",
    "issue_description_trgm",
    "issue_search_document",
    "note_body_trgm",
    "note_search_document",
    "issue_requester_trgm",
    "issue_reply_to_trgm",
    "issue_requester_name_trgm",
    "note_author_trgm",
    "note_name_trgm",
    "participant_email_trgm",
    "participant_name_trgm",
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


def test_a_huge_text_is_searched_whole_for_words(client, project, reporter) -> None:
    """Full-text search reads the first 100 000 characters of a text (the rest cannot always
    be indexed), so a search that finds nothing still works; words are found anywhere."""
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
    """One query searches; the tab counts and the rows use the ids it found (10 queries for a
    Reporter's page without a search, test_tracker)."""
    IssueFactory(project=project, author=reporter, title="Add a zebra skin")
    client.force_login(reporter)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url(project), {"search": "zebra"})
    assert titles(response) == ["Add a zebra skin"]
    searching = [q["sql"] for q in captured.captured_queries if "zebra" in q["sql"].lower()]
    assert len(searching) == 1, searching
    assert len(captured) == 11


def test_postgresql_can_answer_the_search_from_its_indexes(project, reporter) -> None:
    """An expression index serves only a query that spells the very same expression: if the
    search's ``UPPER(col::text)`` drifts from migrations 0008 and 0014 by one character, or
    it stops reading the stored vectors, the index names disappear from the plan.

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
        # Nor walk a whole small table through another index (a stored vector costs little
        # to read, so 200 notes in issue order are cheaper than asking the GIN index).
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert list(query) == [quokka.pk]
    for index in SEARCH_INDEXES:
        assert f"Bitmap Index Scan on {index}" in plan, plan
    assert f"project_id = {project.pk}" in plan


# --- words, not substrings; customers' names and addresses -------------------------------------


@pytest.fixture
def tickets(project, reporter) -> dict[str, Issue]:
    """Two customers' tickets: Finn's is not confidential (a Guest reads it, without his
    address), Jürgen's is; Jake is Cc'd on Jürgen's."""
    bot = support_bot()
    finn = IssueFactory(project=project, author=bot, title="Refund for a double charge",
                        description="Charged twice.", external_author="finn@customer.example",
                        confidential=False)  # fmt: skip
    Issue.objects.filter(pk=finn.pk).update(external_author_name="Finn Mertens")
    jurgen = IssueFactory(project=project, author=bot, title="Spiel stürzt ab",
                          description="Thanks for looking into it!",
                          external_author="jurgen@kunde.example", confidential=True)  # fmt: skip
    participant_add(issue=jurgen, email="jurgen@kunde.example")
    cc, _ = participant_add(issue=jurgen, email="jake@customer.example")
    EmailParticipant.objects.filter(pk=cc.pk).update(name="Jake Peralta")
    team = IssueFactory(project=project, author=reporter, title="Inventory redesign",
                        description="Mention jake@customer.example nowhere else.")  # fmt: skip
    return {"finn": finn, "jurgen": jurgen, "team": team}


def found(client, project: Project, search: str) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(titles(client.get(url(project), {"search": search, "state": "all"})))


def test_words_match_at_their_start_never_inside_a_word(client, project, reporter, tickets):
    client.force_login(reporter)
    assert found(client, project, "hank") == []  # not in "Thanks"
    assert found(client, project, "thanks") == ["Spiel stürzt ab"]
    assert found(client, project, "inven") == ["Inventory redesign"]  # as one types
    assert found(client, project, "ventory") == []
    assert found(client, project, "STÜRZT") == ["Spiel stürzt ab"]
    assert found(client, project, "double charge") == ["Refund for a double charge"]


def test_a_customers_name_finds_their_tickets(client, project, reporter, guest, tickets):
    client.force_login(reporter)
    assert found(client, project, "finn") == ["Refund for a double charge"]
    assert found(client, project, "mertens") == ["Refund for a double charge"]
    assert found(client, project, "peralta") == ["Spiel stürzt ab"]  # a participant's name
    client.force_login(guest)
    # The requester's name is on the page Guests read; participants are not.
    assert found(client, project, "finn") == ["Refund for a double charge"]
    assert found(client, project, "peralta") == []


def test_an_address_finds_the_tickets_of_its_requester_or_participant(
    client, project, reporter, tickets
) -> None:
    client.force_login(reporter)
    assert found(client, project, "finn@customer.example") == ["Refund for a double charge"]
    assert found(client, project, "JURGEN@kunde.example") == ["Spiel stürzt ab"]
    # Jake is a participant there; the team's issue has his address in its text.
    assert found(client, project, "jake@customer.example") == [
        "Inventory redesign",
        "Spiel stürzt ab",
    ]
    assert found(client, project, "jurg") == ["Spiel stürzt ab"]  # an address, as one types


def test_requester_token_filters_by_the_requester(client, project, reporter, tickets) -> None:
    client.force_login(reporter)
    assert found(client, project, "requester:jurgen@kunde.example") == ["Spiel stürzt ab"]
    assert found(client, project, "requester:jake@customer.example") == []  # only Cc'd
    assert found(client, project, "Requester:FINN@customer.example refund") == [
        "Refund for a double charge"
    ]
    assert found(client, project, "requester:finn@customer.example stürzt") == []
    assert found(client, project, "requester:nobody") == []
    response = client.get(url(project), {"search": "requester:finn@customer.example"})
    assert response.context["filters"].narrowed
    assert 'value="requester:finn@customer.example"' in response.content.decode()


def test_guests_cannot_find_tickets_by_address(client, project, guest, tickets) -> None:
    """Finn's ticket is on a Guest's list, without his address: searching for it must not tell
    them who wrote it."""
    client.force_login(guest)
    assert found(client, project, "") == ["Inventory redesign", "Refund for a double charge"]
    assert found(client, project, "finn@customer.example") == []
    assert found(client, project, "finn@cust") == []
    assert found(client, project, "requester:finn@customer.example") == []
    # An address in a text the Guest reads is found as any words are.
    assert found(client, project, "jake@customer.example") == ["Inventory redesign"]


@pytest.mark.parametrize(
    "search", ["(a+)+$", ".*", "[", "\\", "a|e", "^", "\\w", "%", "_", "(?i)", "*", "' OR 1=1 --"]
)
def test_search_text_is_literal_whatever_it_holds(client, project, reporter, tickets, search):
    client.force_login(reporter)
    assert found(client, project, search) == []


def test_metacharacters_in_a_word_match_themselves(client, project, reporter) -> None:
    IssueFactory(project=project, author=reporter, title="Crash in C++ (v2.3)")
    IssueFactory(project=project, author=reporter, title="Crash in Cxx v2x3")
    client.force_login(reporter)
    assert found(client, project, "c++ (v2.3)") == ["Crash in C++ (v2.3)"]
    assert found(client, project, "v2.3") == ["Crash in C++ (v2.3)"]


# --- the stored vectors (PostgreSQL: generated columns of migration 0014) ----------------------


def _stored_vector(table: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT search_vector::text FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def test_the_stored_vectors_follow_every_edit(client, project, reporter) -> None:
    issue = IssueFactory(project=project, author=reporter, title="Printer jams",
                         description="Paper everywhere.")  # fmt: skip
    client.force_login(reporter)
    assert found(client, project, "printers") == ["Printer jams"]  # stemmed: the vector's words
    assert "'printer':1A" in _stored_vector("issues_issue", issue.pk)  # the title weighs A
    assert "'paper':3B" in _stored_vector("issues_issue", issue.pk)  # the description B
    issue.title = "Scanner jams"
    issue.save()
    Issue.objects.filter(pk=issue.pk).update(description="Toner everywhere.")
    assert found(client, project, "printers") == []
    assert found(client, project, "scanners") == ["Scanner jams"]
    assert found(client, project, "toners") == ["Scanner jams"]
    assert found(client, project, "quokkas") == []
    note = note_create(issue=issue, author=reporter, body="A quokka sat on it.")
    assert "'quokka'" in _stored_vector("issues_note", note.pk)
    assert found(client, project, "quokkas") == ["Scanner jams"]
    Note.objects.filter(pk=note.pk).update(body="A wombat sat on it.")
    assert found(client, project, "quokkas") == []
    assert found(client, project, "wombats") == ["Scanner jams"]


def test_internal_notes_are_searched_for_reporters_only(client, project, reporter, guest) -> None:
    issue = IssueFactory(project=project, author=reporter, title="Login fails", confidential=False)
    note = note_create(issue=issue, author=reporter, body="Escalated to the wombats", internal=True)
    client.force_login(guest)
    assert found(client, project, "wombats") == []
    assert found(client, project, "escalating") == []  # stemmed (full text) or not
    client.force_login(reporter)
    assert found(client, project, "wombats") == ["Login fails"]
    assert found(client, project, "escalating") == ["Login fails"]
    Note.objects.filter(pk=note.pk).update(internal=False)
    client.force_login(guest)
    assert found(client, project, "escalating") == ["Login fails"]


def test_the_search_syntax_cannot_break_the_query(client, project, reporter, tickets) -> None:
    """What people type is read as a web search (``websearch_to_tsquery``), which knows no
    syntax error: unbalanced quotes, operators alone, tsquery's own syntax are all text."""
    client.force_login(reporter)
    for search in ['"', '"refund', "-", "or", "refund & | !", "!!", "a:*", "'", "<->", "(("]:
        titles(client.get(url(project), {"search": search, "state": "all"}))
    assert found(client, project, '"double charge') == ["Refund for a double charge"]
    assert found(client, project, "refund -double") == []


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    typed=st.text(max_size=300) | st.text(alphabet="\"'-:*&|!()<> abc@.", max_size=40)
)
def test_any_search_typed_is_answered(project, reporter, tickets, typed) -> None:
    """Whatever is typed (through the form, as the page reads it) is answered, not an error."""
    filters = IssueFilterForm(data={"search": typed, "state": "all"}).filters()
    assert len(filters.search) <= SEARCH_MAX_LENGTH
    matches = set(issue_search_matches(user=reporter, project=project, search=filters.words))
    assert matches <= {issue.pk for issue in tickets.values()}
