"""The tracker's views beside the state tabs: "Waiting for us" (open issues whose last public
word is the customer's, longest waiting first, each row saying for how long), "Assigned to me"
and "Unassigned"; how they combine with the state tabs, the filters and the sort order."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import support_bot
from issues.filters import STATES, VIEWS
from issues.models import Issue, Speaker
from issues.services import NewNote, issue_close, note_create, notes_create
from projects.models import Project
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db


def url(project: Project) -> str:
    return reverse("issue_list", args=[project.full_path])


def titles(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    return [row.issue.title for row in response.context["page"].object_list]


def customer_wrote(issue: Issue, hours_ago: float) -> None:
    """The customer's last public word came ``hours_ago``."""
    notes_create(
        [NewNote(issue=issue, author=support_bot(), body="Any news?",
                 external_author="jake@customer.example")]
    )  # fmt: skip
    Issue.objects.filter(pk=issue.pk).update(
        last_public_at=timezone.now() - timedelta(hours=hours_ago)
    )


@pytest.fixture
def desk(project, reporter, developer) -> dict[str, Issue]:
    """Four open tickets and a closed one: the customer waits on two (3 h and 2 d), the team
    answered the third, the closed one had the customer's last word too."""
    bot = support_bot()

    def ticket(title: str, **kwargs: object) -> Issue:
        return IssueFactory(project=project, author=bot, title=title, confidential=True,
                            external_author="jake@customer.example", **kwargs)  # fmt: skip

    recent = ticket("Waiting three hours", assignees=[developer])
    oldest = ticket("Waiting two days")
    answered = ticket("Answered by us", assignees=[reporter])
    note_create(issue=answered, author=reporter, body="Fixed in 2.3.2.")
    closed = ticket("Closed after the last word")
    customer_wrote(recent, 3)
    customer_wrote(oldest, 48)
    customer_wrote(closed, 1)
    issue_close(issue=closed, user=reporter)
    team = IssueFactory(project=project, author=reporter, title="Team idea")
    return {"recent": recent, "oldest": oldest, "answered": answered, "closed": closed,
            "team": team}  # fmt: skip


def test_waiting_for_us_lists_open_tickets_the_customer_spoke_last_on_longest_waiting_first(
    client, project, reporter, desk
) -> None:
    assert Issue.objects.get(pk=desk["answered"].pk).last_public_by == Speaker.TEAM
    client.force_login(reporter)
    response = client.get(url(project), {"view": "waiting"})
    assert titles(response) == ["Waiting two days", "Waiting three hours"]
    assert response.context["filters"].sort == "waiting"
    html = response.content.decode()
    assert re.findall(r'data-testid="waiting"[^>]*>([^<]*)<', html) == [
        "waiting 2 d",
        "waiting 3 h",
    ]
    assert 'aria-current="page" title="Tickets whose last public message' in html


def test_waiting_time_shows_on_every_view_and_only_for_tickets_waiting_for_us(
    client, project, reporter, desk
) -> None:
    client.force_login(reporter)
    html = client.get(url(project), {"state": "all"}).content.decode()
    rows = html.split('data-testid="issue-row"')[1:]
    waiting = {
        re.search(r"data-issue-link>([^<]*)<", row)[1]: re.search(  # type: ignore[index]
            r'data-testid="waiting"[^>]*>([^<]*)<', row
        )
        for row in rows
    }
    assert {title for title, badge in waiting.items() if badge} == {
        "Waiting two days",
        "Waiting three hours",
    }


def test_waiting_tab_counts_open_tickets_and_opens_on_them_from_any_state(
    client, project, reporter, desk
) -> None:
    client.force_login(reporter)
    response = client.get(url(project), {"state": "closed"})
    assert response.context["tracker"].counts["waiting"] == 2
    html = response.content.decode()
    # The link drops the state: "Waiting for us" holds open tickets only.
    assert 'href="?view=waiting"' in html
    closed = client.get(url(project), {"state": "closed", "view": "waiting"})
    assert titles(closed) == []
    assert "No closed issues in this view." in closed.content.decode()


def test_assigned_to_me_and_unassigned(client, project, reporter, developer, desk) -> None:
    client.force_login(developer)
    mine = client.get(url(project), {"view": "mine"})
    assert titles(mine) == ["Waiting three hours"]
    counts = mine.context["tracker"].counts
    assert (counts["mine"], counts["unassigned"], counts["issues"]) == (1, 2, 4)
    assert (counts["opened"], counts["closed"], counts["all"]) == (1, 0, 1)
    client.force_login(reporter)
    assert titles(client.get(url(project), {"view": "mine"})) == ["Answered by us"]
    assert titles(client.get(url(project), {"view": "unassigned", "state": "all"})) == [
        "Team idea",
        "Closed after the last word",
        "Waiting two days",
    ]


def test_views_combine_with_filters_and_another_sort(client, project, reporter, desk) -> None:
    client.force_login(reporter)
    params = {"view": "waiting", "assignee": "none", "sort": "created_desc"}
    response = client.get(url(project), params)
    assert titles(response) == ["Waiting two days"]
    assert response.context["tracker"].counts["waiting"] == 1
    html = response.content.decode()
    assert '<input type="hidden" name="view" value="waiting">' in html
    # "Clear filters" keeps the view and the order.
    assert '<a href="?view=waiting&amp;sort=created_desc">Clear filters</a>' in html
    oldest_first = client.get(url(project), {"view": "waiting", "sort": "created_asc"})
    assert titles(oldest_first) == ["Waiting three hours", "Waiting two days"]


def test_waiting_longest_sort_in_all_issues_puts_waiting_tickets_first(
    client, project, reporter, desk
) -> None:
    client.force_login(reporter)
    found = titles(client.get(url(project), {"sort": "waiting"}))
    assert found[:2] == ["Waiting two days", "Waiting three hours"]
    assert set(found[2:]) == {"Answered by us", "Team idea"}


def test_view_tab_names_cannot_be_taken_for_state_tabs(client, project, reporter, desk) -> None:
    states = {name.lower() for name in STATES.values()}
    for name in VIEWS.values():
        assert not set(name.lower().split()) & states, name
    client.force_login(reporter)
    html = client.get(url(project)).content.decode()
    views = html[html.index('aria-label="Views"') : html.index("</nav>", html.index("Views"))]
    labels = re.findall(r">([^<>]+?) <span class=\"count\"", views)
    assert labels == list(VIEWS.values())
    assert "{#" not in html  # a template comment Django did not read as one


def test_assigned_to_me_is_not_offered_to_anonymous_visitors(client, project, desk) -> None:
    project.visibility = "public"
    project.save()
    response = client.get(url(project), {"view": "mine"})
    assert titles(response) == []
    html = response.content.decode()
    assert "Assigned to me" not in html
    assert "Nothing is assigned to you." in html


def test_empty_views_say_what_they_hold(client, project, reporter) -> None:
    IssueFactory(project=project, author=reporter, title="Team idea", assignees=[reporter])
    client.force_login(reporter)
    html = client.get(url(project), {"view": "waiting"}).content.decode()
    assert "Nobody is waiting for an answer." in html
    assert "No issues yet." not in html
    html = client.get(url(project), {"view": "unassigned"}).content.decode()
    assert "Every issue has an assignee." in html


def test_old_service_desk_links_still_open_the_service_desk_view(
    client, project, reporter, desk
) -> None:
    client.force_login(reporter)
    response = client.get(url(project), {"service_desk": "1", "state": "all"})
    assert response.context["filters"].view == "service_desk"
    assert len(titles(response)) == 4
    # Choosing another view drops the old parameter.
    assert 'href="?state=all&amp;view=waiting"' not in response.content.decode()
    assert 'href="?view=waiting"' in response.content.decode()


def test_a_reply_to_a_closed_ticket_that_stays_closed_still_waits_for_us(
    client, project, reporter, desk
) -> None:
    """A project that does not reopen on a customer's reply: the reply does not vanish."""
    closed = desk["closed"]
    notes_create(
        [NewNote(issue=closed, author=support_bot(), body="It broke again",
                 external_author="jake@customer.example")]
    )  # fmt: skip
    closed.refresh_from_db()
    assert closed.state == Issue.State.CLOSED
    assert closed.waiting_for_us
    client.force_login(reporter)
    response = client.get(url(project), {"view": "waiting"})
    assert "Closed after the last word" in titles(response)
    assert response.context["tracker"].counts["waiting"] == 3
