from __future__ import annotations

import threading

import pytest
from django.db import connection

from issues.models import Issue, IssueCounter, Note
from issues.services import issue_close, issue_create, issue_reopen, note_create, participant_add
from projects.models import Project
from tests.factories import IssueFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_iids_count_per_project(project) -> None:
    other = ProjectFactory()
    author = UserFactory()
    iids = [issue_create(project=project, author=author, title=f"t{i}").iid for i in range(3)]
    assert iids == [1, 2, 3]
    assert issue_create(project=other, author=author, title="x").iid == 1


@pytest.mark.django_db(transaction=True)
def test_iids_stay_unique_under_concurrent_creation(project) -> None:
    """Eight threads, each its own PostgreSQL connection, create 25 issues each at once."""
    assert connection.vendor == "postgresql"
    author = UserFactory()
    threads, per_thread = 8, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def create_many() -> None:
        try:
            start.wait()
            for i in range(per_thread):
                issue_create(
                    project=Project.objects.get(pk=project.pk), author=author, title=f"{i}"
                )
        except BaseException as exc:  # collected and reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=create_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    iids = sorted(Issue.objects.filter(project=project).values_list("iid", flat=True))
    assert iids == list(range(1, threads * per_thread + 1))
    assert IssueCounter.objects.get(project=project).last_iid == threads * per_thread


def test_saving_a_stale_project_does_not_rewind_iids(project) -> None:
    stale = Project.objects.get(pk=project.pk)
    author = UserFactory()
    issue_create(project=project, author=author, title="one")
    stale.name = "Renamed"
    stale.save()
    assert issue_create(project=project, author=author, title="two").iid == 2


def test_title_is_normalised() -> None:
    issue = IssueFactory(title="  Help\r\nme  ")
    assert issue.title == "Help me"
    assert IssueFactory(title="   ").title == "(no title)"


def test_note_create_touches_the_issue() -> None:
    issue = IssueFactory()
    before = Issue.objects.get(pk=issue.pk).updated_at
    note = note_create(issue=issue, author=issue.author, body="  hi  ")
    assert note.body == "hi"
    assert Issue.objects.get(pk=issue.pk).updated_at >= before
    with pytest.raises(ValueError, match="needs a body"):
        note_create(issue=issue, author=issue.author, body="   ")


def test_close_and_reopen_add_system_notes_once(project, reporter) -> None:
    issue = IssueFactory(project=project)
    closed = issue_close(issue=issue, user=reporter)
    issue_close(issue=issue, user=reporter)
    assert closed.state == Issue.State.CLOSED
    assert closed.closed_by == reporter
    assert closed.closed_at is not None
    reopened = issue_reopen(issue=issue, user=reporter)
    issue_reopen(issue=issue, user=reporter)
    assert reopened.state == Issue.State.OPENED
    assert reopened.closed_at is None
    assert list(Note.objects.filter(issue=issue, system=True).values_list("body", flat=True)) == [
        "closed",
        "reopened",
    ]


def test_participants_are_unique_case_insensitively() -> None:
    issue = IssueFactory()
    first, created = participant_add(issue=issue, email="Jake@Example.org")
    again, created_again = participant_add(issue=issue, email="jake@example.ORG ")
    assert created
    assert not created_again
    assert again == first
    assert issue.email_participants.count() == 1
