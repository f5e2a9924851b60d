"""The issue pages: who sees what, and the comment/close/reopen actions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.selectors import support_bot
from issues.models import Issue, Note
from issues.services import note_create, participant_add
from projects.models import Visibility
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def email_issue(project):
    issue = IssueFactory(
        project=project,
        author=support_bot(),
        title="Printer on fire",
        description="It **burns**.\n\n<script>alert(1)</script>",
        confidential=True,
        external_author="jake@customer.example",
    )
    participant_add(issue=issue, email="jake@customer.example")
    note_create(issue=issue, author=support_bot(), body="Internal triage", internal=True)
    note_create(issue=issue, author=support_bot(), body="Public reply")
    return issue


def detail_url(issue: Issue) -> str:
    return reverse("issue_detail", args=[issue.project.full_path, issue.iid])


def test_login_page_renders(client) -> None:
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_reporter_sees_confidential_issue_internal_notes_and_requester(
    client, reporter, email_issue
) -> None:
    client.force_login(reporter)
    response = client.get(detail_url(email_issue))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Printer on fire" in html
    assert "<strong>burns</strong>" in html
    assert "<script>" not in html
    assert "Internal triage" in html
    assert "jake@customer.example" in html
    assert 'name="internal"' in html


@pytest.mark.parametrize("persona", ["guest", "outsider"])
def test_confidential_issue_is_404_for_guests_and_outsiders(
    client, request, persona, email_issue
) -> None:
    client.force_login(request.getfixturevalue(persona))
    assert client.get(detail_url(email_issue)).status_code == 404
    notes = reverse("note_add", args=[email_issue.project.full_path, email_issue.iid])
    assert client.post(notes, {"body": "sneaky"}).status_code == 404
    assert not Note.objects.filter(body="sneaky").exists()


def test_anonymous_is_sent_to_login_whether_or_not_the_issue_exists(client, email_issue) -> None:
    real = client.get(detail_url(email_issue))
    missing = client.get(reverse("issue_detail", args=["acme/game", 999]))
    assert real.status_code == missing.status_code == 302
    assert real["Location"].startswith("/login/?next=")


def test_guest_sees_public_issues_without_internal_notes_or_emails(client, guest, project) -> None:
    issue = IssueFactory(project=project, external_author="jake@customer.example")
    note_create(issue=issue, author=issue.author, body="Team only", internal=True)
    note_create(issue=issue, author=issue.author, body="Everyone")
    client.force_login(guest)
    html = client.get(detail_url(issue)).content.decode()
    assert "Everyone" in html
    assert "Team only" not in html
    assert "jake@customer.example" not in html
    assert 'name="internal"' not in html


def test_issue_list_filters_by_state_and_hides_confidential_from_guests(
    client, project, reporter, guest
) -> None:
    IssueFactory(project=project, title="Open and public")
    IssueFactory(project=project, title="Open and secret", confidential=True)
    closed = IssueFactory(project=project, title="Closed one")
    closed.state = Issue.State.CLOSED
    closed.save()
    url = reverse("issue_list", args=[project.full_path])

    client.force_login(reporter)
    opened = client.get(url).content.decode()
    assert "Open and public" in opened
    assert "Open and secret" in opened
    assert "Closed one" not in opened
    assert "Closed one" in client.get(url, {"state": "closed"}).content.decode()
    assert client.get(url, {"state": "all"}).context["page"].paginator.count == 3

    client.force_login(guest)
    as_guest = client.get(url).content.decode()
    assert "Open and public" in as_guest
    assert "Open and secret" not in as_guest


def test_issue_list_costs_a_fixed_number_of_queries(
    client, project, reporter, django_assert_max_num_queries
) -> None:
    client.force_login(reporter)
    url = reverse("issue_list", args=[project.full_path])
    for i in range(30):
        note_create(issue=IssueFactory(project=project, title=f"n{i}"), author=reporter, body="x")
    with django_assert_max_num_queries(10):
        assert client.get(url).status_code == 200


def test_dave_has_no_projects(client, outsider, project) -> None:
    client.force_login(outsider)
    response = client.get(reverse("home"))
    assert response.context["projects"] == []
    assert b"not a member of any project" in response.content
    assert client.get(reverse("issue_list", args=[project.full_path])).status_code == 404


def test_reporter_adds_internal_note(client, reporter, email_issue) -> None:
    client.force_login(reporter)
    url = reverse("note_add", args=[email_issue.project.full_path, email_issue.iid])
    response = client.post(url, {"body": "Checking logs", "internal": "on"})
    note = Note.objects.get(body="Checking logs")
    assert response.status_code == 302
    assert response["Location"].endswith(f"#note-{note.pk}")
    assert note.internal
    assert note.author == reporter


def test_guest_cannot_add_internal_note_on_public_issue(client, guest, project) -> None:
    issue = IssueFactory(project=project)
    client.force_login(guest)
    url = reverse("note_add", args=[project.full_path, issue.iid])
    assert client.post(url, {"body": "hidden?", "internal": "on"}).status_code == 403
    assert client.post(url, {"body": "A public comment"}).status_code == 302
    assert Note.objects.filter(body="A public comment", internal=False).exists()


def test_empty_comment_is_rejected_with_a_message(client, reporter, email_issue) -> None:
    client.force_login(reporter)
    url = reverse("note_add", args=[email_issue.project.full_path, email_issue.iid])
    response = client.post(url, {"body": "   "})
    assert response.status_code == 400
    assert b"Write a comment or attach a file." in response.content


def test_close_and_reopen(client, reporter, guest, project) -> None:
    issue = IssueFactory(project=project)
    close = reverse("issue_close", args=[project.full_path, issue.iid])
    reopen = reverse("issue_reopen", args=[project.full_path, issue.iid])
    client.force_login(guest)
    assert client.post(close).status_code == 403
    client.force_login(reporter)
    assert client.get(close).status_code == 405
    assert client.post(close).status_code == 302
    assert Issue.objects.get(pk=issue.pk).state == "closed"
    assert client.post(reopen).status_code == 302
    assert Issue.objects.get(pk=issue.pk).state == "opened"


def test_public_project_issue_readable_anonymously(client, project) -> None:
    project.visibility = Visibility.PUBLIC
    project.save()
    issue = IssueFactory(project=project, title="Public bug")
    response = client.get(detail_url(issue))
    assert response.status_code == 200
    assert b"Sign in</a> to comment" in response.content


def test_health_endpoint(client) -> None:
    assert client.get("/-/health").json() == {"status": "ok"}


def test_relative_times_read_naturally(client, reporter, project) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from issues.templatetags.relative_time import ago

    assert ago(timezone.now()) == "just now"
    assert ago(timezone.now() - timedelta(minutes=5)) == "5\xa0minutes ago"  # non-breaking
    IssueFactory(project=project, title="Fresh")
    client.force_login(reporter)
    assert b"just now" in client.get(reverse("issue_list", args=[project.full_path])).content
