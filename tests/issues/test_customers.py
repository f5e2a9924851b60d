"""Customers on the issue page and on their own page: an email note names the customer who
wrote it (the Support Bot only posted it); the requester links to the customer page, which lists
their issues in the projects where the viewer is Reporter+ (a 404 for anyone else); the sidebar
shows their latest other issues."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import support_bot
from issues import customer_views
from issues.models import Issue
from issues.selectors import customer_issues_for_user
from issues.services import NewNote, issue_close, notes_create, participant_add
from projects.models import Project, Role
from projects.services import membership_set
from tests.factories import GroupFactory, IssueFactory, ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db

JURGEN = "jurgen@kunde.example"


def customer_page(address: str, **params: str) -> str:
    return f"{reverse('customer_detail')}?{urlencode({'email': address, **params})}"


def ticket(project: Project, title: str, *, requester: str = JURGEN, **kwargs: object) -> Issue:
    """An issue as the mailroom makes it: Support Bot, requester (with a name), participant."""
    issue = IssueFactory(project=project, author=support_bot(), title=title,
                         external_author=requester, confidential=kwargs.pop("confidential", True),
                         **kwargs)  # fmt: skip
    Issue.objects.filter(pk=issue.pk).update(external_author_name="Jürgen Weiß")
    issue.external_author_name = "Jürgen Weiß"
    participant_add(issue=issue, email=requester)
    return issue


def email_note(issue: Issue, *, name: str = "Jürgen Weiß", address: str = JURGEN) -> None:
    notes_create(
        [NewNote(issue=issue, author=support_bot(), body="Still broken.",
                 external_author=address, external_name=name)]
    )  # fmt: skip


def note_head(html: str) -> str:
    start = html.index('<div class="note-head">')
    return html[start : html.index("</div>", start)]


# --- who wrote an email note ------------------------------------------------------------------


def test_an_email_note_names_the_customer_and_the_bot_only_as_its_poster(
    client, project, reporter
) -> None:
    issue = ticket(project, "Spiel stürzt ab")
    email_note(issue)
    client.force_login(reporter)
    head = note_head(client.get(issue.get_absolute_url()).content.decode())
    assert "Jürgen Weiß</strong>" in head
    assert "(via email)" in head
    assert f'data-testid="note-sender">{JURGEN}</a>' in head
    assert 'title="Sent by email, posted by Support Bot"' in head
    assert "sent through Support Bot" in head
    assert "<strong>Support Bot</strong>" not in head


def test_an_email_note_without_a_name_shows_the_address_to_reporters_only(
    client, project, reporter, guest
) -> None:
    issue = ticket(project, "Spiel stürzt ab", confidential=False)
    email_note(issue, name="")
    client.force_login(reporter)
    head = note_head(client.get(issue.get_absolute_url()).content.decode())
    assert f"{JURGEN}</a></strong>" in head
    client.force_login(guest)
    html = client.get(issue.get_absolute_url()).content.decode()
    head = note_head(html)
    assert "A customer</strong>" in head
    assert "(via email)" in head
    assert "@kunde.example" not in html


def test_guests_see_the_customers_name_but_no_address(client, project, guest) -> None:
    issue = ticket(project, "Spiel stürzt ab", confidential=False)
    email_note(issue)
    client.force_login(guest)
    html = client.get(issue.get_absolute_url()).content.decode()
    assert "Jürgen Weiß</strong>" in note_head(html)
    assert 'data-testid="issue-author"' in html  # "opened by Jürgen Weiß (via email)"
    assert "@kunde.example" not in html
    assert reverse("customer_detail") not in html


# --- the customer page ------------------------------------------------------------------------


@pytest.fixture
def elsewhere(project) -> Project:
    """A project of another group, where bob (Reporter in acme/game) is a Guest."""
    other = ProjectFactory(group=GroupFactory(path="beta"), path="shop", service_desk_enabled=True)
    return other


def test_the_customer_page_lists_their_issues_newest_first_in_reporter_projects(
    client, project, reporter, elsewhere
) -> None:
    now = timezone.now()
    first = ticket(project, "First ticket")
    second = ticket(project, "Cc'd on a colleague's", requester="kollege@kunde.example")
    participant_add(issue=second, email="JURGEN@kunde.example")
    third = ticket(project, "Latest ticket")
    issue_close(issue=first, user=reporter)
    for age, issue in enumerate([third, second, first]):
        Issue.objects.filter(pk=issue.pk).update(created_at=now - timedelta(days=age))
    ticket(project, "Someone else's", requester="other@kunde.example")
    membership_set(user=reporter, project=elsewhere, role=Role.GUEST)
    ticket(elsewhere, "In a project where bob is a Guest")
    client.force_login(reporter)
    response = client.get(customer_page("Jurgen@Kunde.example"))
    assert response.status_code == 200
    rows = response.context["page"].object_list
    assert [issue.title for issue in rows] == ["Latest ticket", "Cc'd on a colleague's",
                                               "First ticket"]  # fmt: skip
    html = response.content.decode()
    assert "Jürgen Weiß" in html
    assert html.count('data-testid="customer-issue-state">Open<') == 2
    assert html.count('data-testid="customer-issue-state">Closed<') == 1
    assert "participant" in html
    assert first.get_absolute_url() in html
    # Reporter there too: now the other project's ticket is listed.
    membership_set(user=reporter, project=elsewhere, role=Role.REPORTER)
    rows = client.get(customer_page(JURGEN)).context["page"].object_list
    assert "In a project where bob is a Guest" in [issue.title for issue in rows]


def test_the_customer_page_is_a_404_below_reporter(
    client, project, guest, outsider, elsewhere
) -> None:
    """Carol is a Guest where Jürgen wrote (a ticket she can even read) and Owner of a project
    where he never did: nothing tells her whether he ever wrote in."""
    ticket(project, "Public ticket", confidential=False)
    membership_set(user=guest, project=elsewhere, role=Role.OWNER)
    for user in (guest, outsider):
        client.force_login(user)
        assert client.get(customer_page(JURGEN)).status_code == 404
        assert client.get(customer_page("nobody@kunde.example")).status_code == 404
    client.logout()
    response = client.get(customer_page(JURGEN))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("query", ["", "?email=", "?email=not-an-address", "?email=a@b@c"])
def test_the_customer_page_of_no_address_is_a_404(client, reporter, query) -> None:
    client.force_login(reporter)
    assert client.get(reverse("customer_detail") + query).status_code == 404


def test_the_customer_page_is_paginated(client, project, reporter, monkeypatch) -> None:
    monkeypatch.setattr(customer_views, "CUSTOMER_ISSUES_PER_PAGE", 2)
    for n in range(5):
        ticket(project, f"Ticket {n}")
    client.force_login(reporter)
    first = client.get(customer_page(JURGEN))
    assert [i.title for i in first.context["page"].object_list] == ["Ticket 4", "Ticket 3"]
    html = first.content.decode()
    assert "Page 1 of 3" in html
    assert f'href="?email={JURGEN.replace("@", "%40")}&amp;page=2" rel="next"' in html
    last = client.get(customer_page(JURGEN, page="3"))
    assert [i.title for i in last.context["page"].object_list] == ["Ticket 0"]


def test_the_customer_page_costs_fixed_queries(client, project, reporter, elsewhere) -> None:
    membership_set(user=reporter, project=elsewhere, role=Role.REPORTER)
    ticket(project, "One")
    client.force_login(reporter)
    with CaptureQueriesContext(connection) as few:
        assert client.get(customer_page(JURGEN)).status_code == 200
    for n in range(30):
        ticket(project if n % 2 else elsewhere, f"More {n}")
    with CaptureQueriesContext(connection) as many:
        assert client.get(customer_page(JURGEN)).status_code == 200
    assert len(few) == len(many)


# --- the issue page's requester ---------------------------------------------------------------


def test_the_requester_links_to_the_customer_page_with_their_latest_other_issues(
    client, project, reporter, elsewhere
) -> None:
    now = timezone.now()
    older = [ticket(project, f"Older {n}") for n in range(6)]
    membership_set(user=reporter, project=elsewhere, role=Role.REPORTER)
    in_shop = ticket(elsewhere, "In the shop")
    current = ticket(project, "Current")
    for age, issue in enumerate([current, in_shop, *reversed(older)]):
        Issue.objects.filter(pk=issue.pk).update(created_at=now - timedelta(hours=age))
    client.force_login(reporter)
    response = client.get(current.get_absolute_url())
    assert [i.title for i in response.context["customer_issues"]] == [
        "In the shop", "Older 5", "Older 4", "Older 3", "Older 2",
    ]  # fmt: skip
    html = response.content.decode()
    requester = html[html.index('data-testid="requester"') :]
    assert f'href="{customer_page(JURGEN)}"' in requester[: requester.index("</p>")]
    assert "beta/shop#" in html  # another project's issue says where it is
    assert "All their issues" in html


def test_the_sidebar_lists_only_issues_the_viewer_may_see_as_reporter(
    client, project, reporter, elsewhere
) -> None:
    membership_set(user=reporter, project=elsewhere, role=Role.GUEST)
    ticket(elsewhere, "Where bob is a Guest", confidential=False)
    current = ticket(project, "Current")
    client.force_login(reporter)
    response = client.get(current.get_absolute_url())
    assert response.context["customer_issues"] == []
    assert "Their other issues" not in response.content.decode()


def test_the_sidebar_costs_fixed_queries(client, project, reporter, elsewhere) -> None:
    membership_set(user=reporter, project=elsewhere, role=Role.REPORTER)
    current = ticket(project, "Current")
    ticket(project, "Another")
    client.force_login(reporter)
    client.get(current.get_absolute_url())  # warm the caches that are not per request
    with CaptureQueriesContext(connection) as few:
        client.get(current.get_absolute_url())
    for n in range(20):
        ticket(elsewhere if n % 2 else project, f"More {n}")
    with CaptureQueriesContext(connection) as many:
        response = client.get(current.get_absolute_url())
    assert len(response.context["customer_issues"]) == 5
    assert len(few) == len(many)


def test_a_group_reporter_sees_the_customers_issues_in_every_project_below(client, project) -> None:
    rita = UserFactory(username="rita")
    membership_set(user=rita, group=project.group, role=Role.REPORTER)
    sibling = ProjectFactory(group=project.group, path="web")
    ticket(project, "In game")
    ticket(sibling, "In web")
    client.force_login(rita)
    rows = client.get(customer_page(JURGEN)).context["page"].object_list
    assert sorted(issue.title for issue in rows) == ["In game", "In web"]
    guest = member(sibling, Role.GUEST, "gus")
    client.force_login(guest)
    assert client.get(customer_page(JURGEN)).status_code == 404


def test_postgresql_finds_a_customers_issues_from_its_indexes(project, reporter) -> None:
    """The sidebar asks on every issue page: across all of the viewer's projects, it must read
    the customer's rows only (``issue_requester``, ``participant_email``), not every issue. As
    in test_search, the planner is told that the table is large (no sequential scans)."""
    ticket(project, "Spiel stürzt ab")
    bot = support_bot()
    Issue.objects.bulk_create(
        Issue(project=project, iid=n, title=f"Issue {n}", author=bot,
              external_author=f"customer{n}@kunde.example")
        for n in range(2, 202)
    )  # fmt: skip
    query = customer_issues_for_user(user=reporter, address=JURGEN)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE issues_issue")
        cursor.execute("ANALYZE issues_emailparticipant")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert [issue.title for issue in query] == ["Spiel stürzt ab"]
    for index in ("issue_requester", "participant_email"):
        # A plain or a bitmap scan of the index, as the statistics of the moment suggest.
        assert f"Index Scan using {index}" in plan or f"Bitmap Index Scan on {index}" in plan, plan
