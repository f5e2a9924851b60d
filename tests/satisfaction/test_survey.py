"""Customer satisfaction: three signed links in the closing email, answered without a login."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone, translation

from issues.models import EmailParticipant, OutboundEmail
from issues.services import (
    issue_close,
    issue_reopen,
    participant_unsubscribe,
    service_desk_ticket_create,
)
from satisfaction.models import Rating
from satisfaction.services import survey_read

pytestmark = pytest.mark.django_db
LINK = re.compile(r"https?://[^\s)\]>]+/-/satisfaction/[^\s)\]>]+/(good|okay|bad)/")


@pytest.fixture(autouse=True)
def english():  # type: ignore[no-untyped-def]
    with translation.override("en"):
        yield


@pytest.fixture
def surveyed(project):  # type: ignore[no-untyped-def]
    project.service_desk.satisfaction_survey = True
    project.service_desk.save()
    return project


def closed_ticket(project, reporter, email: str = "jake@customer.example"):  # type: ignore[no-untyped-def]
    issue = service_desk_ticket_create(project=project, user=reporter, email=email, title="Broken")
    issue_close(issue=issue, user=reporter)
    return issue


def links_in(email: OutboundEmail) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in LINK.finditer(email.body_text)}


def path(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def test_the_closing_email_asks_and_a_click_records_the_answer(client, surveyed, reporter) -> None:  # type: ignore[no-untyped-def]
    issue = closed_ticket(surveyed, reporter)
    [email] = OutboundEmail.objects.filter(kind=OutboundEmail.Kind.ISSUE_CLOSED)
    links = links_in(email)
    assert set(links) == {"good", "okay", "bad"}
    assert links["good"] in email.body_html.replace("&amp;", "&")
    # The page answers nothing by itself (a link scanner); its form, sent by its script, does.
    page = client.get(path(links["good"]))
    assert page.status_code == 200
    assert "data-autosubmit" in page.content.decode()
    assert not Rating.objects.exists()
    client.post(path(links["good"]), {"score": "good"})
    rating = Rating.objects.get()
    assert (rating.issue, rating.score) == (issue, "good")
    # Again: nothing new; then a changed mind and a comment.
    client.post(path(links["good"]), {"score": "good"})
    client.post(path(links["bad"]), {"score": "bad", "comment": "Took a week."})
    rating = Rating.objects.get()
    assert (rating.score, rating.comment) == ("bad", "Took a week.")


def test_links_expire_after_seven_days_and_cannot_be_forged(client, surveyed, reporter) -> None:  # type: ignore[no-untyped-def]
    closed_ticket(surveyed, reporter)
    link = links_in(OutboundEmail.objects.get(kind=OutboundEmail.Kind.ISSUE_CLOSED))["okay"]
    token = path(link).split("/")[3]
    assert survey_read(token) is not None
    assert survey_read(token[:-2] + "xx") is None
    assert (
        client.post(path(link).replace(token, token[:-1] + "A"), {"score": "okay"}).status_code
        == 410
    )
    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        assert client.post(path(link), {"score": "okay"}).status_code == 410
    assert not Rating.objects.exists()


def test_each_close_asks_once_and_is_rated_on_its_own(client, surveyed, reporter) -> None:  # type: ignore[no-untyped-def]
    issue = closed_ticket(surveyed, reporter)
    issue_close(issue=issue, user=reporter)  # already closed: no second email
    assert OutboundEmail.objects.filter(kind=OutboundEmail.Kind.ISSUE_CLOSED).count() == 1
    issue_reopen(issue=issue, user=reporter)
    issue_close(issue=issue, user=reporter)
    first, second = OutboundEmail.objects.filter(kind=OutboundEmail.Kind.ISSUE_CLOSED).order_by(
        "pk"
    )
    client.post(path(links_in(first)["good"]), {"score": "good"})
    client.post(path(links_in(second)["bad"]), {"score": "bad"})
    assert sorted(Rating.objects.values_list("score", flat=True)) == ["bad", "good"]


def test_no_survey_for_robots_unsubscribed_or_when_off(project, surveyed, reporter) -> None:  # type: ignore[no-untyped-def]
    closed_ticket(surveyed, reporter, email="no-reply@shop.example")
    [robot] = OutboundEmail.objects.filter(kind=OutboundEmail.Kind.ISSUE_CLOSED)
    assert not links_in(robot)
    issue = service_desk_ticket_create(
        project=surveyed, user=reporter, email="ann@customer.example", title="x"
    )
    participant_unsubscribe(participant=EmailParticipant.objects.get(issue=issue), actor=reporter)
    issue_close(issue=issue, user=reporter)
    assert not OutboundEmail.objects.filter(
        kind=OutboundEmail.Kind.ISSUE_CLOSED, issue=issue
    ).exists()
    surveyed.service_desk.satisfaction_survey = False
    surveyed.service_desk.save()
    closed_ticket(surveyed, reporter, email="bo@customer.example")
    assert not OutboundEmail.objects.filter(recipient="bo@customer.example").exists()


def test_the_rating_shows_on_the_ticket_for_reporters_only(
    client, surveyed, reporter, guest
) -> None:  # type: ignore[no-untyped-def]
    issue = closed_ticket(surveyed, reporter)
    link = links_in(OutboundEmail.objects.get(kind=OutboundEmail.Kind.ISSUE_CLOSED))["okay"]
    client.post(path(link), {"score": "okay", "comment": "Fine."})
    client.force_login(reporter)
    page = client.get(issue.get_absolute_url()).content.decode()
    assert 'data-testid="rating"' in page
    assert "Fine." in page
