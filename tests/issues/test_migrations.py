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
