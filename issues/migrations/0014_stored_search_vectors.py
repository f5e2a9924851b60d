"""The tracker's full-text search reads stored vectors (PostgreSQL only; SQLite: migration
``0015_sqlite_fts5``).

- ``issues_issue.search_vector`` and ``issues_note.search_vector``: ``GENERATED ALWAYS AS
  (…) STORED`` tsvector columns, the title weighted A and the description B, each of the
  first 100 000 characters (a longer text may have a vector over PostgreSQL's 1 MB limit),
  in the text search configuration SERVICEDESK_SEARCH_CONFIG names when this runs. PostgreSQL
  keeps them up to date on every INSERT and UPDATE, so nothing in Python writes them; they
  are not model fields (SQLite has no tsvector), ``issues.selectors`` names them in SQL.
  A GIN index on each. They replace migration 0008's expression indexes and its
  ``servicedesk_search_vector`` function: reading a stored vector costs nothing per row,
  where the expression had to be computed again for every row the index could not decide.
- pg_trgm GIN indexes on what the search compares for customers' addresses and names
  (``UPPER(col::text)``, the expression of ``iexact``/``istartswith`` and of the word search's
  regular expressions), so none of them reads every row of a large project either.

Adding a stored generated column rewrites the table under an exclusive lock (about a minute
per million notes); the indexes are then built CONCURRENTLY, hence ``atomic = False``.
"""

import importlib

from django.conf import settings
from django.db import migrations

ISSUE_VECTOR = (
    "setweight(to_tsvector({config}, left(COALESCE(title, ''), 100000)), 'A')"
    " || setweight(to_tsvector({config}, left(COALESCE(description, ''), 100000)), 'B')"
)
NOTE_VECTOR = "to_tsvector({config}, left(COALESCE(body, ''), 100000))"
COLUMNS = {"issues_issue": ISSUE_VECTOR, "issues_note": NOTE_VECTOR}

INDEXES = {
    "issue_search_document": ("issues_issue", "search_vector"),
    "note_search_document": ("issues_note", "search_vector"),
    "issue_requester_trgm": ("issues_issue", "UPPER(external_author::text) gin_trgm_ops"),
    "issue_reply_to_trgm": ("issues_issue", "UPPER(service_desk_reply_to::text) gin_trgm_ops"),
    "issue_requester_name_trgm": (
        "issues_issue",
        "UPPER(external_author_name::text) gin_trgm_ops",
    ),
    "note_author_trgm": ("issues_note", "UPPER(external_author::text) gin_trgm_ops"),
    "note_name_trgm": ("issues_note", "UPPER(external_name::text) gin_trgm_ops"),
    "participant_email_trgm": ("issues_emailparticipant", "UPPER(email::text) gin_trgm_ops"),
    "participant_name_trgm": ("issues_emailparticipant", "UPPER(name::text) gin_trgm_ops"),
}
REPLACED = ["issue_search_vector", "note_search_vector"]

# True, at its real price: PostgreSQL prices a regular expression or ``@@`` per row at almost
# nothing, far below what one on a long description takes, and so would rather test every
# issue of a large project than ask the index when a word is common (20 000 issues, "crash":
# 95 ms). The search ANDs this to each condition an index can answer; PostgreSQL tests it
# after the cheap conditions, on the rows they kept only. Never inlined (PL/pgSQL), so its
# COST is what the planner sees: enough to choose the index, not so much that the plan's
# total cost calls for JIT compilation (~40 ms) or parallel workers (whose start costs more
# than the few thousand rows they would share), which PARALLEL UNSAFE rules out.
WEIGHT_FUNCTION = """
CREATE OR REPLACE FUNCTION servicedesk_text_read(unused boolean)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL UNSAFE COST 100 AS $$
BEGIN
    RETURN true;
END
$$
"""


def _old() -> object:
    return importlib.import_module("issues.migrations.0008_search_indexes")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    config = schema_editor.quote_value(settings.SERVICEDESK_SEARCH_CONFIG) + "::regconfig"
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(WEIGHT_FUNCTION)
    for table, vector in COLUMNS.items():
        schema_editor.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS search_vector tsvector"
            f" GENERATED ALWAYS AS ({vector.format(config=config)}) STORED"
        )
    for name, (table, expression) in INDEXES.items():
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY {name} ON {table} USING gin ({expression})"
        )
    for name in REPLACED:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    schema_editor.execute("DROP FUNCTION IF EXISTS servicedesk_search_vector(regconfig, text)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    for table in COLUMNS:
        schema_editor.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
    schema_editor.execute("DROP FUNCTION IF EXISTS servicedesk_text_read(boolean)")
    _old().create_indexes(apps, schema_editor)  # type: ignore[attr-defined]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("issues", "0013_outbound_account_emails"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, atomic=False, elidable=False),
    ]
