"""The project dashboard (SPEC §11): tickets opened and closed, first response, backlog."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import support_bot
from issues.dashboard import project_dashboard
from issues.dashboard_views import humanize_duration
from issues.models import Issue, Note
from issues.services import note_create
from satisfaction.selectors import satisfaction_report
from sla.selectors import response_report
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db
CUSTOMER = "jake@customer.example"


def noon(days_ago: int) -> dt.datetime:
    day = timezone.localdate() - dt.timedelta(days=days_ago)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(12)))


def ticket(project, *, created: dt.datetime, closed: dt.datetime | None = None) -> Issue:
    issue = IssueFactory(project=project, author=support_bot(), external_author=CUSTOMER)
    state = Issue.State.CLOSED if closed else Issue.State.OPENED
    Issue.objects.filter(pk=issue.pk).update(created_at=created, closed_at=closed, state=state)
    issue.refresh_from_db()
    return issue


def note_at(issue: Issue, at: dt.datetime, **kwargs) -> Note:  # type: ignore[no-untyped-def]
    note = note_create(issue=issue, body="x", **kwargs)
    Note.objects.filter(pk=note.pk).update(created_at=at)
    return note


def url(project) -> str:
    return reverse("project_dashboard", args=[project.full_path])


@pytest.fixture
def tickets(project, owner, reporter):
    """Three tickets opened in the window, two closed in it, two open now."""
    answered = ticket(project, created=noon(10), closed=noon(5))
    created = answered.created_at
    # None of these is a first response: the bot's thank-you, an internal note, a system note,
    # the customer's email reply (even when its author is a person).
    note_at(answered, created + dt.timedelta(minutes=1), author=support_bot())
    note_at(answered, created + dt.timedelta(minutes=10), author=reporter, internal=True)
    note_at(answered, created + dt.timedelta(minutes=20), author=reporter, system=True)
    note_at(answered, created + dt.timedelta(minutes=30), author=owner, external_author=CUSTOMER)
    note_at(answered, created + dt.timedelta(hours=2), author=reporter)
    note_at(answered, created + dt.timedelta(hours=5), author=owner)

    waiting = ticket(project, created=noon(3))
    note_at(waiting, waiting.created_at + dt.timedelta(hours=4), author=owner)
    ticket(project, created=timezone.now())  # not answered yet
    ticket(project, created=noon(40), closed=noon(2))  # opened before the window
    # Not tickets: an ordinary issue, and a ticket of another project.
    ordinary = IssueFactory(project=project, author=owner)
    note_at(ordinary, ordinary.created_at, author=owner)
    ticket(IssueFactory().project, created=noon(1))


def test_numbers_on_a_known_data_set(project, tickets) -> None:
    dashboard = project_dashboard(project=project)

    assert (dashboard.opened, dashboard.closed, dashboard.open_now) == (3, 2, 2)
    assert len(dashboard.days) == 30
    assert dashboard.days[-1].day == timezone.localdate()
    by_age = {(timezone.localdate() - d.day).days: d for d in dashboard.days}
    assert [by_age[age].opened for age in (10, 3, 1, 0)] == [1, 1, 0, 1]
    assert [by_age[age].closed for age in (5, 2, 0)] == [1, 1, 0]


def test_backlog_is_open_tickets_at_the_end_of_each_day(project, tickets) -> None:
    backlog = {
        (timezone.localdate() - d.day).days: d.backlog
        for d in project_dashboard(project=project).days
    }
    # today: the waiting and the new ticket; 1-2 days ago: waiting only (the old one closed
    # 2 days ago); 3 days ago: waiting and old; 4-5: old (answered closed 5 days ago);
    # 6-10: answered and old; before: old.
    assert [backlog[age] for age in range(12)] == [2, 1, 1, 2, 1, 1, 2, 2, 2, 2, 2, 1]
    assert backlog[29] == 1


def test_median_first_response_ignores_bot_internal_system_and_email_notes(
    project, tickets
) -> None:
    dashboard = project_dashboard(project=project)

    assert dashboard.responded == 2
    assert dashboard.median_first_response == dt.timedelta(hours=3)  # median of 2 h and 4 h


def test_median_first_response_is_a_dash_without_answers(client, project, reporter) -> None:
    issue = ticket(project, created=noon(1))
    note_at(issue, noon(1) + dt.timedelta(minutes=5), author=support_bot())
    client.force_login(reporter)

    assert project_dashboard(project=project).median_first_response is None
    response = client.get(url(project))
    assert "—" in response.content.decode()


def test_durations_read_as_people_write_them() -> None:
    assert humanize_duration(None) == "—"
    assert humanize_duration(dt.timedelta(seconds=20)) == "< 1 min"
    assert humanize_duration(dt.timedelta(hours=3)) == "3 h"
    assert humanize_duration(dt.timedelta(hours=4, minutes=20)) == "4 h 20 min"
    assert humanize_duration(dt.timedelta(days=2, hours=3, minutes=5)) == "2 d 3 h"


@pytest.mark.parametrize("persona", ["owner", "reporter"])
def test_reporters_and_up_see_the_dashboard_as_svg_charts(
    client, request, project, tickets, persona
) -> None:
    client.force_login(request.getfixturevalue(persona))

    response = client.get(url(project))

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<svg") == 5
    assert '<title id="flow-title">' in html
    assert "<script>" not in html  # only the site's own deferred scripts, no inline code
    assert '<a href="' + url(project) in html  # the Dashboard tab
    assert "<dd>3 h</dd>" in html


@pytest.mark.parametrize("persona", ["guest", "outsider"])
def test_below_reporter_gets_404(client, request, project, persona) -> None:
    client.force_login(request.getfixturevalue(persona))

    assert client.get(url(project)).status_code == 404
    issue_list = client.get(reverse("issue_list", args=[project.full_path]))
    assert url(project) not in issue_list.content.decode()  # no Dashboard tab


def test_anonymous_is_sent_to_login(client, project) -> None:
    response = client.get(url(project))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def _make_tickets(project, owner, count: int) -> None:
    for i in range(count):
        issue = ticket(project, created=noon(i % 30), closed=noon(0) if i % 3 == 0 else None)
        note_at(issue, issue.created_at + dt.timedelta(minutes=i), author=owner)


def test_a_fixed_number_of_queries_whatever_the_number_of_tickets(
    client, project, owner, django_assert_num_queries
) -> None:
    client.force_login(owner)
    _make_tickets(project, owner, 10)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url(project)).status_code == 200
    _make_tickets(project, owner, 190)

    with django_assert_num_queries(len(small.captured_queries)):
        assert client.get(url(project)).status_code == 200
    with django_assert_num_queries(4):
        dashboard = project_dashboard(project=project)
    assert (dashboard.opened, dashboard.responded) == (200, 200)


def test_response_targets_and_satisfaction_per_week_in_a_fixed_number_of_queries(
    client, project, owner, django_assert_num_queries
) -> None:
    from satisfaction.models import Rating
    from sla.models import ResponsePolicy, ResponseRecord

    ResponsePolicy.objects.create(project=project, enabled=True)
    client.force_login(owner)
    now = timezone.now()

    def record(issue, seconds: int, met: bool) -> ResponseRecord:  # type: ignore[no-untyped-def]
        return ResponseRecord.objects.create(
            project=project, issue=issue, kind="first", started_at=now, answered_at=now,
            ended_at=now, business_seconds=seconds, target_seconds=4 * 3600, met=met,
        )  # fmt: skip

    issues = [ticket(project, created=noon(n)) for n in range(10)]
    for n, issue in enumerate(issues):
        record(issue, (n + 1) * 1800, met=(n + 1) * 1800 <= 4 * 3600)
        Rating.objects.create(project=project, issue=issue, closed_at=now,
                              score=["good", "okay", "bad"][n % 3],
                              comment="Slow." if n == 2 else "")  # fmt: skip
    with CaptureQueriesContext(connection) as small:
        page = client.get(url(project)).content.decode()
    # 30 min, 1 h, … 5 h: eight within the 4 h target, two past it; median 2 h 30 min.
    assert "Median 2 h 30 min, 90th percentile 4 h 30 min, over 10 first responses" in page
    assert "<td>8</td><td>2</td>" in page
    assert "Slow." in page
    for issue in [ticket(project, created=noon(n % 30)) for n in range(40)]:
        record(issue, 600, met=True)
        Rating.objects.create(project=project, issue=issue, closed_at=now, score="good")
    with django_assert_num_queries(len(small.captured_queries)):
        assert client.get(url(project)).status_code == 200
    with django_assert_num_queries(3):
        response_report(project=project)
    with django_assert_num_queries(2):
        satisfaction_report(project=project)
