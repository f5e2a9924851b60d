"""No unused duplicate indexes: on PostgreSQL Django gives every CharField/TextField with
``db_index=True`` or ``unique=True`` a second, ``varchar_pattern_ops`` index (``…_like``) that
only serves ``LIKE 'prefix%'`` (``startswith``). Our models use ``Meta.indexes`` and
``UniqueConstraint`` instead, which add none; a ``_like`` index is kept only where a query
really is a prefix match, and each is listed here with that query."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

ALLOWED = {
    # Group.objects / Project.objects.filter(full_path__startswith="parent/") in
    # projects.selectors (a group's projects and subgroups) and projects.services (rename).
    ("projects_group", "full_path"),
    ("projects_project", "full_path"),
    # Django's own apps (their migrations are Django's): small tables, left as they are.
    ("auth_group", "name"),
    ("django_session", "session_key"),
}


def like_indexes() -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.relname, a.attname FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey)"
            " JOIN pg_opclass o ON o.oid = ANY(x.indclass)"
            " WHERE n.nspname = current_schema()"
            " AND o.opcname IN ('varchar_pattern_ops', 'text_pattern_ops')"
        )
        return set(cursor.fetchall())


def test_no_like_index_but_the_allowed_ones() -> None:
    assert connection.vendor == "postgresql"
    found = like_indexes()
    assert found - ALLOWED == set(), "unused LIKE-prefix twins: use Meta.indexes/UniqueConstraint"
    assert found == ALLOWED  # the allow-list names only indexes that exist
