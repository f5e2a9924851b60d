"""Saved replies: one's own and a project's, placeholders filled in, inserted from the comment
box (with JavaScript, and without: ?saved_reply=)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from issues.models import Issue
from saved_replies.models import SavedReply
from saved_replies.services import saved_reply_fill, saved_reply_save
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ticket(project, reporter) -> Issue:  # type: ignore[no-untyped-def]
    issue = IssueFactory(project=project, title="Refund please", confidential=True,
                         external_author="jake@customer.example")  # fmt: skip
    Issue.objects.filter(pk=issue.pk).update(external_author_name="Jake Doe")
    issue.refresh_from_db()
    return issue


def insert_url(issue: Issue, reply: SavedReply) -> str:
    return reverse("saved_reply_insert", args=[issue.project.full_path, issue.iid, reply.pk])


def test_placeholders_are_filled_for_the_ticket_and_the_person(ticket, reporter) -> None:
    reply = saved_reply_save(
        user=reporter, name="Refund",
        content="Hi %{CUSTOMER_NAME}, about %{ISSUE_ID} (%{ISSUE_TITLE}) in %{PROJECT_NAME}.\n"
                "-- %{AUTHOR_NAME}\n/label ~refund\n/close",
    )  # fmt: skip
    text = saved_reply_fill(reply=reply, issue=ticket, user=reporter)
    assert text == (
        f"Hi Jake Doe, about #{ticket.iid} (Refund please) in Game.\n-- {reporter.display_name}\n"
        "/label ~refund\n/close"
    )


def test_a_mistyped_placeholder_is_refused_with_a_suggestion(reporter) -> None:
    with pytest.raises(ValidationError) as raised:
        saved_reply_save(user=reporter, name="Oops", content="Hi %{CUSTOMER_NAM}")
    assert "%{CUSTOMER_NAM} (did you mean %{CUSTOMER_NAME}?)" in str(raised.value)


def test_names_are_unique_per_owner(reporter, project) -> None:
    saved_reply_save(user=reporter, name="Refund", content="a")
    saved_reply_save(project=project, name="Refund", content="b")  # another owner: fine
    with pytest.raises(ValidationError):
        saved_reply_save(user=reporter, name="Refund", content="c")


def test_the_comment_box_offers_own_and_project_replies_and_inserts_them(
    client, ticket, reporter, maintainer, project
) -> None:
    own = saved_reply_save(user=reporter, name="Mine", content="Hello %{CUSTOMER_NAME}")
    shared = saved_reply_save(project=project, name="Shared", content="Team text")
    others = saved_reply_save(user=maintainer, name="Mia's", content="Not yours")
    client.force_login(reporter)
    page = client.get(ticket.get_absolute_url()).content.decode()
    assert insert_url(ticket, own) in page
    assert insert_url(ticket, shared) in page
    assert insert_url(ticket, others) not in page
    answer = client.get(insert_url(ticket, own))
    assert answer.status_code == 200
    assert answer.content.decode() == "Hello Jake Doe"
    assert client.get(insert_url(ticket, others)).status_code == 404
    # Without JavaScript: the link reloads the page with the comment box filled in.
    page = client.get(ticket.get_absolute_url(), {"saved_reply": shared.pk}).content.decode()
    assert "Team text</textarea>" in page


def test_guests_get_no_saved_replies(client, project, guest) -> None:
    issue = IssueFactory(project=project, confidential=False)
    shared = saved_reply_save(project=project, name="Shared", content="Team text")
    client.force_login(guest)
    assert insert_url(issue, shared) not in client.get(issue.get_absolute_url()).content.decode()
    assert client.get(insert_url(issue, shared)).status_code == 404


def test_maintainers_manage_the_projects_replies_and_people_their_own(
    client, project, reporter, maintainer
) -> None:
    url = reverse("project_saved_replies", args=[project.full_path])
    client.force_login(reporter)
    assert client.get(url).status_code == 403
    own = client.post(reverse("saved_replies"), {"name": "Mine", "content": "x"})
    assert own.status_code == 302
    client.force_login(maintainer)
    response = client.post(url, {"name": "Refund", "content": "Hi %{NOPE}"})
    assert response.status_code == 400
    assert "Unknown placeholder" in response.content.decode()
    assert client.post(url, {"name": "Refund", "content": "Hi"}).status_code == 302
    reply = SavedReply.objects.get(project=project)
    edit = reverse("project_saved_reply_edit", args=[project.full_path, reply.pk])
    assert client.post(edit, {"name": "Refund", "content": "Hello"}).status_code == 302
    reply.refresh_from_db()
    assert reply.content == "Hello"
    assert client.post(edit, {"delete": "1"}).status_code == 302
    assert not SavedReply.objects.filter(project=project).exists()
    # The reporter's own reply is not the maintainer's to open.
    mine = SavedReply.objects.get(user=reporter)
    assert client.get(reverse("saved_reply_edit", args=[mine.pk])).status_code == 404
