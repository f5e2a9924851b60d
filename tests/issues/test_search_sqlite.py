"""SQLite's search index (FTS5, issues/fts.py): it only narrows the search, so it must find
every row the search's own rule finds, whatever is typed; and triggers keep it in step. The
suite runs on PostgreSQL: the first tests use an in-memory SQLite with the very table and
query the app uses, the last runs the app on SQLite in a subprocess."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from issues.fts import TOKENIZER, match_query
from issues.selectors import _escaped

ROOT = Path(__file__).resolve().parents[2]

# Letters with and without accents and case pairs, digits, separators and FTS5's operators.
# Not the letters Python's re alone holds equal to another (dotless i, long s, the Kelvin
# sign…): FTS5 does not, which is the one known difference (README, Known limitations).
ALPHABET = "aAbBzZéÉüÜßøØ019 _-.@+*\"():^&|!'%\\\t"
texts = st.text(alphabet=ALPHABET, max_size=30)


def _index(documents: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE fts USING fts5(body, tokenize='{TOKENIZER}')")
    db.executemany("INSERT INTO fts(rowid, body) VALUES (?, ?)", enumerate(documents, 1))
    return db


def _rule(text: str, document: str) -> bool:
    """The search's rule (``_StartsAWord`` on SQLite: Python's re through REGEXP)."""
    return re.search(rf"(?i)(?<!\w){_escaped(text)}", document) is not None


@settings(max_examples=400, deadline=None)
@given(text=texts, documents=st.lists(texts, min_size=1, max_size=5))
def test_the_index_finds_every_row_the_search_finds(text, documents) -> None:
    query = match_query(text)
    if query is None:  # no word: the search reads the rows without the index
        assert not any(char.isalnum() for char in text)
        return
    found = {row[0] for row in _index(documents).execute(
        "SELECT rowid FROM fts WHERE fts MATCH ?", (query,))}  # fmt: skip
    for number, document in enumerate(documents, 1):
        if _rule(text.strip(), document):
            assert number in found, (text, document, query)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_is_a_valid_match_query(text) -> None:
    query = match_query(text)
    if query is not None:
        _index(["Crash in C++ (v2.3)", text]).execute(
            "SELECT rowid FROM fts WHERE fts MATCH ?", (query,)
        ).fetchall()


def test_words_are_one_phrase_the_last_one_a_prefix() -> None:
    db = _index(["Game crashes on start", "start the game", "double charge", "doubled charges"])

    def rows(text: str) -> list[int]:
        query = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid"
        return [row[0] for row in db.execute(query, (match_query(text),))]

    assert rows("crash") == [1]
    assert rows("GAME") == [1, 2]
    assert rows("double charge") == [3]  # a phrase, the last word a prefix
    assert rows("double char") == [3]
    assert rows('game" OR "start') == []  # quotes are text, not syntax
    assert match_query("((%)") is None


SCRIPT = r"""
import json
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
from accounts.models import User
from issues.models import Issue, Note
from issues.selectors import issue_search_matches
from issues.services import note_create
from projects.models import Role
from projects.services import group_create, membership_set, project_create

owner = User.objects.create_user(username="ann", email="ann@example.test")
game = project_create(group=group_create(path="acme"), path="game")
other = project_create(group=group_create(path="zoo"), path="zoo")
membership_set(user=owner, project=game, role=Role.REPORTER)

def issue(project, iid, title, description=""):
    return Issue.objects.create(project=project, iid=iid, author=owner, title=title,
                                description=description)

printer = issue(game, 1, "Printer jams", "Paper everywhere")
issue(other, 1, "Printer on fire")
note = note_create(issue=printer, author=owner, body="A quokka sat on it", internal=True)

def found(text):
    ids = set(issue_search_matches(user=owner, project=game, search=text))
    return sorted(Issue.objects.filter(pk__in=ids).values_list("title", flat=True))

def plan(text):
    query = issue_search_matches(user=owner, project=game, search=text)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return " | ".join(str(row[-1]) for row in cursor.fetchall())

out = [found("printer"), found("quokka"), found("paper every")]
printer.title = "Scanner jams"
printer.save()
Note.objects.filter(pk=note.pk).update(body="A wombat sat on it")
out += [found("printer"), found("scann"), found("quokka"), found("wombat")]
Note.objects.filter(pk=note.pk).delete()
out += [found("wombat")]
out.append("issues_issue_fts VIRTUAL TABLE INDEX" in plan("scanner"))
out.append("issues_note_fts VIRTUAL TABLE INDEX" in plan("scanner"))
# A table rebuilt by an ALTER loses its triggers: the next migrate puts them back.
with connection.cursor() as cursor:
    cursor.execute("DROP TRIGGER issues_issue_fts_update")
Issue.objects.filter(pk=printer.pk).update(title="Plotter jams")  # missed by the index
call_command("migrate", verbosity=0)
out += [found("plotter"), found("scanner")]
for text in ['"', "-", "*", "NEAR(a b)", "title:printer", "a OR b", "((", "'"]:
    found(text)
print(json.dumps(out))
"""


def test_the_search_on_sqlite_uses_its_index_and_follows_every_change(tmp_path) -> None:
    scrubbed = ("DATABASE_", "REDIS_", "SERVICEDESK_", "EMAIL_", "SECRET_KEY", "SITE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
    env.update(DJANGO_SETTINGS_MODULE="servicedesk.settings", SERVICEDESK_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        ["Printer jams"],  # not the other project's printer
        ["Printer jams"],
        ["Printer jams"],
        [],
        ["Scanner jams"],
        [],
        ["Scanner jams"],
        [],
        True,
        True,
        ["Plotter jams"],
        [],
    ]
