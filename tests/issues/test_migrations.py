"""Data migrations, run forwards on rows written by the schema before them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(target: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def test_existing_issues_each_get_their_own_random_thread_token(project, owner) -> None:
    old = migrate([("issues", "0004_outbound_attachments")])
    Issue = old.get_model("issues", "Issue")
    for iid in (1, 2, 3):
        Issue.objects.create(project_id=project.pk, iid=iid, title=f"Old {iid}", author_id=owner.pk)
    new = migrate([("issues", "0005_thread_token_and_held_replies")])
    tokens = list(new.get_model("issues", "Issue").objects.values_list("thread_token", flat=True))
    assert len(tokens) == 3
    assert len(set(tokens)) == 3
    assert all(len(token) == 32 and int(token, 16) for token in tokens)
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_quoted_history_moves_out_of_notes_and_sent_links_keep_working(project, owner) -> None:
    old = migrate([("issues", "0005_thread_token_and_held_replies")])
    Issue, Note = old.get_model("issues", "Issue"), old.get_model("issues", "Note")
    Sent = old.get_model("issues", "SentNotification")
    issue = Issue.objects.create(project_id=project.pk, iid=1, title="Old", author_id=owner.pk)
    quoted = Note.objects.create(
        issue=issue, author_id=owner.pk, external_author="jake@customer.example",
        body='Thanks!\n\n<details markdown="1">\n<summary>Quoted text</summary>\n\n'
        "> We fixed it\n> in 2.4\n\n</details>",
    )  # fmt: skip
    team = Note.objects.create(issue=issue, author_id=owner.pk, body='<details markdown="1">x')
    sent = Sent.objects.create(issue=issue, recipient="jake@customer.example", reply_key="a" * 32)

    new = migrate([("issues", "0006_unsubscribe_token_and_quoted_text")])
    Note, Sent = new.get_model("issues", "Note"), new.get_model("issues", "SentNotification")
    moved = Note.objects.get(pk=quoted.pk)
    assert (moved.body, moved.quoted) == ("Thanks!", "> We fixed it\n> in 2.4")
    assert Note.objects.get(pk=team.pk).body == '<details markdown="1">x'  # not from email
    assert Sent.objects.get(pk=sent.pk).unsubscribe_token == "a" * 32
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_each_issue_learns_who_spoke_last_in_public(project, owner) -> None:
    old = migrate([("issues", "0008_search_indexes")])
    Issue, Note = old.get_model("issues", "Issue"), old.get_model("issues", "Note")

    def issue(iid: int, customer: str = "") -> object:
        return Issue.objects.create(project_id=project.pk, iid=iid, title=f"#{iid}",
                                    author_id=owner.pk, external_author=customer)  # fmt: skip

    answered, waiting = issue(1, "j@c.example"), issue(2, "j@c.example")
    issue(3, "j@c.example")  # nobody answered yet
    issue(4)  # not from a customer
    Note.objects.create(issue=answered, author_id=owner.pk, body="q", external_author="j@c.example")
    Note.objects.create(issue=answered, author_id=owner.pk, body="answer")
    Note.objects.create(issue=answered, author_id=owner.pk, body="aside", internal=True)
    Note.objects.create(issue=waiting, author_id=owner.pk, body="answer")
    Note.objects.create(issue=waiting, author_id=owner.pk, body="q", external_author="j@c.example")
    new = migrate([("issues", "0009_customer_names_and_last_speaker")])
    by = dict(new.get_model("issues", "Issue").objects.values_list("iid", "last_public_by"))
    assert by == {1: "team", 2: "customer", 3: "customer", 4: ""}
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
