"""Indexes for the tracker's search, on PostgreSQL only (SQLite: nothing to do).

- pg_trgm GIN indexes on exactly what Django's ``icontains`` compares on PostgreSQL,
  ``UPPER(col::text) LIKE UPPER('%…%')``, so substring search need not read every row;
- expression GIN indexes on the full-text vectors, spelled exactly as
  ``issues.selectors.search_vector`` spells them (PostgreSQL uses an expression index only for
  the same expression), with the text search configuration SERVICEDESK_SEARCH_CONFIG names
  when this migration runs. A query with another configuration is still answered, without
  these two indexes (README, PostgreSQL).

Built CONCURRENTLY, so an instance with many issues keeps taking mail while they are built;
that cannot run in a transaction, hence ``atomic = False``. Each index is dropped first, so a
build that failed half-way (leaving an invalid index) is redone by running the migration again.
``CREATE EXTENSION pg_trgm`` needs a superuser, or (PostgreSQL 13+) a database owner since the
extension is trusted.
"""

from django.conf import settings
from django.db import migrations

# issues.selectors.SEARCH_DOCUMENT_MAX_CHARS when this migration was written.
DOCUMENT_MAX_CHARS = 100_000

INDEXES = {
    "issue_title_trgm": ("issues_issue", "UPPER(title::text) gin_trgm_ops"),
    "issue_description_trgm": ("issues_issue", "UPPER(description::text) gin_trgm_ops"),
    "issue_search_vector": (
        "issues_issue",
        (
            "to_tsvector({config}::regconfig, "
            "left(COALESCE(title, '') || ' ' || COALESCE(description, ''), {max_chars}))"
        ),
    ),
    "note_body_trgm": ("issues_note", "UPPER(body::text) gin_trgm_ops"),
    "note_search_vector": (
        "issues_note",
        "to_tsvector({config}::regconfig, left(COALESCE(body, ''), {max_chars}))",
    ),
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    config = schema_editor.quote_value(settings.SERVICEDESK_SEARCH_CONFIG)
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, expression) in INDEXES.items():
        expression = expression.format(config=config, max_chars=DOCUMENT_MAX_CHARS)
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY {name} ON {table} USING gin ({expression})"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("issues", "0004_outbound_attachments"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, atomic=False, elidable=False),
    ]
