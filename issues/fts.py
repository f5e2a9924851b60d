"""SQLite's full-text index for the tracker's search (FTS5; the embedded default database).

Two external-content FTS5 tables, ``issues_issue_fts`` (title, description) and
``issues_note_fts`` (body), hold only the index: the text stays in the issues and notes
tables, and triggers keep the index in step with every INSERT, UPDATE and DELETE, whoever
writes (the ORM, a bulk update, raw SQL). Migration ``0015_sqlite_fts5`` creates them;
``ensure_triggers`` runs again after every ``migrate`` (``IssuesConfig.ready``), because
SQLite's schema editor rebuilds a table to alter it, and the rebuilt table has lost its
triggers: missing ones are recreated and the index rebuilt from the text.

The index only narrows the search: ``issues.selectors`` asks it for the rows that have the
typed words as a phrase (the last one as a prefix), then applies the search's own rule
(a word that starts with the text, ``_StartsAWord``) to those rows alone. So what is found is
exactly what it was without the index; only the rows read change.
"""

from __future__ import annotations

from typing import Any

TOKENIZER = "unicode61 remove_diacritics 2"
TABLES = {
    "issues_issue_fts": ("issues_issue", ("title", "description")),
    "issues_note_fts": ("issues_note", ("body",)),
}


def _triggers(fts: str, table: str, columns: tuple[str, ...]) -> dict[str, str]:
    names = ", ".join(columns)
    new = ", ".join(f"new.{column}" for column in columns)
    old = ", ".join(f"old.{column}" for column in columns)
    # Names from TABLES only, never from input.
    insert = f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new});"  # noqa: S608
    delete = f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old});"  # noqa: S608
    return {
        f"{fts}_insert": f"AFTER INSERT ON {table} BEGIN {insert} END",
        f"{fts}_delete": f"AFTER DELETE ON {table} BEGIN {delete} END",
        f"{fts}_update": f"AFTER UPDATE OF {names} ON {table} BEGIN {delete} {insert} END",
    }


def create_tables(cursor: Any) -> None:
    for fts, (table, columns) in TABLES.items():
        cursor.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({', '.join(columns)},"
            f" content='{table}', content_rowid='id', tokenize='{TOKENIZER}')"
        )
    ensure_triggers(cursor, rebuild=True)


def drop_tables(cursor: Any) -> None:
    for fts, (table, columns) in TABLES.items():
        for trigger in _triggers(fts, table, columns):
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        cursor.execute(f"DROP TABLE IF EXISTS {fts}")


def ensure_triggers(cursor: Any, *, rebuild: bool = False) -> list[str]:
    """Create the triggers that are missing, and rebuild each index that missed one (or
    every index with ``rebuild``); returns the names of the triggers created."""
    cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
    present = {row[0] for row in cursor.fetchall()}
    created: list[str] = []
    for fts, (table, columns) in TABLES.items():
        if fts not in present:
            continue  # before migration 0015
        missing = {
            name: body
            for name, body in _triggers(fts, table, columns).items()
            if name not in present
        }
        for name, body in missing.items():
            cursor.execute(f"CREATE TRIGGER {name} {body}")
        if missing or rebuild:
            cursor.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")  # noqa: S608
        created += missing
    return created


def match_query(text: str) -> str | None:
    """``text`` as an FTS5 query that is never a syntax error: one quoted phrase (a quote
    inside is doubled), the last word a prefix (``"c++ (v2.3"*``: FTS5 reads the words
    inside the quotes with its tokenizer, so punctuation is a separator, never an operator).
    None when the text has no word at all (``%``, ``((``): the index cannot narrow such a
    search, which then reads the project's rows as before. NUL ends an FTS5 string: it is a
    space here (the search form refuses it anyway)."""
    text = text.replace("\x00", " ")
    if not any(char.isalnum() for char in text):
        return None
    return '"' + text.replace('"', '""') + '"*'
