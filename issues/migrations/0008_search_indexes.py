"""Indexes for the tracker's search, on PostgreSQL only (SQLite: nothing to do).

- pg_trgm GIN indexes on exactly what Django's ``icontains`` compares on PostgreSQL,
  ``UPPER(col::text) LIKE UPPER('%…%')``, so substring search need not read every row;
- GIN indexes on the full-text vectors, ``servicedesk_search_vector(config, document)``, spelled
  exactly as ``issues.selectors.search_vector`` spells them (PostgreSQL uses an expression index
  only for the same expression), with the text search configuration SERVICEDESK_SEARCH_CONFIG
  names when this migration runs. A query with another configuration is still answered,
  without these two indexes (README, PostgreSQL).

``servicedesk_search_vector`` is ``to_tsvector`` of the first 100 000 characters (a longer
text may have a vector over PostgreSQL's 1 MB limit, and an index must index every row),
declared with its real cost: PostgreSQL prices ``to_tsvector`` at 100, far below what it
takes, and so would rather compute the vector of every issue of a large project than ask the
index. A PL/pgSQL function is never inlined, so its COST is what the planner sees.

Built CONCURRENTLY, so an instance with many issues keeps taking mail while they are built;
that cannot run in a transaction, hence ``atomic = False``. Each index is dropped first, so a
build that failed half-way (leaving an invalid index) is redone by running the migration again.
``CREATE EXTENSION pg_trgm`` needs a superuser, or (PostgreSQL 13+) a user with CREATE on the
database, pg_trgm being a trusted extension.
"""

from django.conf import settings
from django.db import migrations

SEARCH_VECTOR_FUNCTION = """
CREATE OR REPLACE FUNCTION servicedesk_search_vector(config regconfig, document text)
RETURNS tsvector LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 10000 AS $$
BEGIN
    RETURN to_tsvector(config, left(document, 100000));
END
$$
"""

INDEXES = {
    "issue_title_trgm": ("issues_issue", "UPPER(title::text) gin_trgm_ops"),
    "issue_description_trgm": ("issues_issue", "UPPER(description::text) gin_trgm_ops"),
    "issue_search_vector": (
        "issues_issue",
        "servicedesk_search_vector({config}, COALESCE(title, '') || ' ' || COALESCE(description, ''))",
    ),
    "note_body_trgm": ("issues_note", "UPPER(body::text) gin_trgm_ops"),
    "note_search_vector": ("issues_note", "servicedesk_search_vector({config}, COALESCE(body, ''))"),
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    config = schema_editor.quote_value(settings.SERVICEDESK_SEARCH_CONFIG) + "::regconfig"
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(SEARCH_VECTOR_FUNCTION)
    for name, (table, expression) in INDEXES.items():
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY {name} ON {table} "
            f"USING gin ({expression.format(config=config)})"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    schema_editor.execute("DROP FUNCTION IF EXISTS servicedesk_search_vector(regconfig, text)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("issues", "0007_outbound_project"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, atomic=False, elidable=False),
    ]
