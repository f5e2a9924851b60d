"""Tracker search benchmark at scale: p50/p95 of the issue list with a search.

    .venv/bin/python bench/search.py [--issues 20000] [--notes 200000] [--rounds 30] [--quick]

Starts its own throwaway PostgreSQL (tests/harness/services.py), migrates, and fills one
project, ``acme/game``, with ``--issues`` issues and ``--notes`` comments spread over them
(one in four internal), plus a neighbour project (``flood/inbox``) with a tenth as many of
each, made of the same words, so that a search that leaked out of its project would show.
Defaults: 20 000 issues / 200 000 notes; the issue's target size is ``--issues 100000
--notes 1000000``.

Shape: titles of 5 words, descriptions of 40, comments of 25, drawn from 5 000 random
words; a third of the issues came by email (``external_author`` c<iid>@customer.example);
one title in seven ends with "crashes"; "quokka" is in 5 comments only. The rows are written
with ``bulk_create`` in batches, the GIN indexes on issues and notes dropped before and
rebuilt after (faster than keeping them up to date row by row), then VACUUM ANALYZE.

Then it times the whole issue list with a search as the page computes it
(``issue_tracker_for_user``: matches, tab counts, rows, labels and assignees, filter choices),
signed in as a Reporter, ``--rounds`` times each after one warm-up: a common word, a stemmed
word, a rare word, an address, the start of an address, the start of a word, and nothing
found. Prints p50/p95 and SQL query counts (``--explain``: each query's time and the plan of
the slowest); writes bench/results/search.json and
bench/results/search-<issues>.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.services import PostgresServer  # noqa: E402

# label -> what is typed (the address is an issue's requester in the middle of the range).
SEARCHES = {
    "common word": "crash",
    "stemmed word": "crashing",
    "rare word": "quokka",
    "address": "c{mid}@customer.example",
    "start of an address": "c{mid}@cust",
    "start of a word": "{prefix}",
    "nothing found": "no such thing",
}
BATCH = 5000


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def fill(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection

    from accounts.models import User
    from accounts.selectors import support_bot
    from issues.models import Issue, Note
    from issues.services import issue_iids_allocate
    from projects.models import Role
    from projects.services import group_create, membership_set, project_create

    rng = random.Random(4711)
    words = vocabulary(rng)

    def prose(count: int) -> str:
        return " ".join(rng.choices(words, k=count))

    game = project_create(group=group_create(path="acme"), path="game", service_desk_enabled=True)
    flood = project_create(group=group_create(path="flood"), path="inbox")
    reporter = User.objects.create_user(username="bob", email="bob@example.test")
    membership_set(user=reporter, project=game, role=Role.REPORTER)
    membership_set(user=reporter, project=flood, role=Role.REPORTER)
    bot = support_bot()

    with connection.cursor() as cursor:  # the GIN indexes: dropped now, rebuilt after
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN"
            " ('issues_issue', 'issues_note') AND indexdef ILIKE '%USING gin%'"
        )
        gin = cursor.fetchall()
        for name, _ in gin:
            cursor.execute(f"DROP INDEX {name}")

    def issues(project: Any, count: int) -> list[int]:
        made: list[int] = []
        for start in range(0, count, BATCH):
            iids = issue_iids_allocate(project_id=project.pk, count=min(BATCH, count - start))
            batch = [
                Issue(
                    project=project, iid=iid, author=bot if iid % 3 else reporter,
                    title=f"{prose(4)} crashes" if iid % 7 == 0 else prose(5),
                    description=prose(40), confidential=iid % 3 == 0,
                    external_author=f"c{iid}@customer.example" if iid % 3 else "",
                    state="closed" if iid % 4 == 0 else "opened",
                )
                for iid in iids
            ]  # fmt: skip
            made += [issue.pk for issue in Issue.objects.bulk_create(batch)]
        return made

    def notes(made: list[int], count: int) -> None:
        for start in range(0, count, BATCH):
            batch = [
                Note(issue_id=made[n % len(made)], author=reporter, body=prose(25),
                     internal=n % 4 == 3)
                for n in range(start, min(count, start + BATCH))
            ]  # fmt: skip
            Note.objects.bulk_create(batch)

    started = time.perf_counter()
    game_issues = issues(game, args.issues)
    notes(game_issues, args.notes)
    Note.objects.bulk_create(
        Note(issue_id=game_issues[n * len(game_issues) // 5], author=reporter,
             body=f"A quokka in the level, {prose(10)}")
        for n in range(5)
    )  # fmt: skip
    flood_issues = issues(flood, max(1, args.issues // 10))
    notes(flood_issues, args.notes // 10)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for _, definition in gin:
            cursor.execute(definition)
        cursor.execute("VACUUM ANALYZE")
    return {
        "game": game,
        "reporter": reporter,
        "words": words,
        "fill_s": round(filled, 1),
        "index_s": round(time.perf_counter() - started, 1),
    }


def explain(label: str, queries: list[dict[str, str]]) -> None:
    """Each query's time (ms) and its start, then EXPLAIN ANALYZE of the slowest."""
    from django.db import connection

    print(f"--- {label}")
    for query in queries:
        print(f"{float(query['time']) * 1000:8.1f} ms  {query['sql'][:110]}")
    slowest = max(queries, key=lambda query: float(query["time"]))
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest["sql"])
        print("\n".join(row[0] for row in cursor.fetchall()))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issues", type=int, default=20_000, help="issues of the project")
    parser.add_argument("--notes", type=int, default=200_000, help="comments of the project")
    parser.add_argument("--rounds", type=int, default=30, help="timed runs per search")
    parser.add_argument("--quick", action="store_true", help="2 000 issues, 20 000 notes")
    parser.add_argument(
        "--explain", action="store_true", help="print each query's time and the slowest's plan"
    )
    args = parser.parse_args()
    if args.quick:
        args.issues, args.notes = 2000, 20_000

    base = Path(tempfile.mkdtemp(prefix="servicedesk-bench-"))
    base.chmod(0o755)
    pg = None
    try:
        pg = PostgresServer(base / "postgres").start()
        os.environ.update(
            {
                "SERVICEDESK_ENV": "development",
                "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
                "DATABASE_URL": pg.url,
                "SERVICEDESK_VAR_DIR": str(base / "var"),
                "LOG_LEVEL": "WARNING",
                "DEBUG": "0",
            }
        )
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from issues.filters import IssueFilters
        from issues.selectors import issue_tracker_for_user

        call_command("migrate", verbosity=0)
        world = fill(args)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            size = cursor.fetchone()[0]
            cursor.execute(
                "SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid))"
                " FROM pg_stat_user_indexes WHERE relname IN ('issues_issue', 'issues_note')"
                " ORDER BY pg_relation_size(indexrelid) DESC LIMIT 8"
            )
            index_sizes = dict(cursor.fetchall())

        mid = args.issues // 2 + 1 if (args.issues // 2 + 1) % 3 else args.issues // 2 + 2
        prefix = sorted(world["words"], key=len)[-1][:5]
        rows = []
        for label, pattern in SEARCHES.items():
            search = pattern.format(mid=mid, prefix=prefix)
            filters = IssueFilters(state="all", search=search)

            def page(filters: IssueFilters = filters) -> Any:
                return issue_tracker_for_user(
                    user=world["reporter"], project=world["game"], filters=filters,
                    page_number=1, per_page=50,
                )  # fmt: skip

            with CaptureQueriesContext(connection) as captured:
                found = page().counts["all"]
            if args.explain:
                explain(label, captured.captured_queries)
            timings = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                page()
                timings.append((time.perf_counter() - started) * 1000)
            rows.append({"search": label, "typed": search, "found": found,
                         "queries": len(captured), "p50_ms": round(statistics.median(timings), 1),
                         "p95_ms": round(percentile(timings, 0.95), 1)})  # fmt: skip
        print(f"data: {args.issues} issues / {args.notes} notes searched (+ a tenth next door);"
              f" database {size}; filled in {world['fill_s']} s, indexes built in"
              f" {world['index_s']} s")  # fmt: skip
        print("largest indexes: " + ", ".join(f"{k} {v}" for k, v in index_sizes.items()))
        print(f"{'search':22} {'typed':26} {'found':>6} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8}")
        for row in rows:
            print(f"{row['search']:22} {row['typed']:26} {row['found']:>6} {row['queries']:>7} "
                  f"{row['p50_ms']:>8} {row['p95_ms']:>8}")  # fmt: skip
        results = ROOT / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        out = {"args": vars(args), "indexes": index_sizes, "database_size": size,
               "fill_s": world["fill_s"], "index_s": world["index_s"], "pages": rows}  # fmt: skip
        text = json.dumps(out, indent=2) + "\n"
        (results / "search.json").write_text(text)
        (results / f"search-{args.issues}.json").write_text(text)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
