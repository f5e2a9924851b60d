"""Tracker search benchmark: does a search cost what its own project holds, or the instance?

    .venv/bin/python bench/search.py [--quick] [--without-indexes]

Starts its own throwaway PostgreSQL (tests/harness/services.py), migrates, and fills two
projects: ``acme/game``, the project searched (``--issues`` issues with two comments each,
one of them internal), and ``flood/inbox``, a neighbour that customers mailed a lot into
(``--flood-issues`` ordinary issues plus ``--flood-mb`` megabytes of long emails, as notes of
100 KB). Then it times the whole issue list with a search, as the page computes it
(``issue_tracker_for_user``: matches, counts, rows, labels and assignees, filter choices), for
a Reporter and an anonymous visitor of the public ``acme/game``, and for a Reporter searching
the neighbour itself. Each figure is the median of ``--rounds`` runs after one warm-up.

``--without-indexes`` drops the search indexes of migration 0005 first, to tell what the
project scoping does from what the indexes do. Prints a table and writes
bench/results/search.json. Not a test: nothing here asserts.
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

SEARCH_INDEXES = [
    "issue_title_trgm",
    "issue_description_trgm",
    "issue_search_vector",
    "note_body_trgm",
    "note_search_vector",
]
# What people type: a word many issues have, a stemmed word, a word only in comments, a word
# only in the neighbour's emails, and nothing at all.
SEARCHES = ["crash", "crashing", "paypal", "w4711x", "no such thing"]


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def prose(rng: random.Random, words: list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count))


def fill(args: argparse.Namespace) -> dict[str, Any]:
    from accounts.models import User
    from accounts.selectors import support_bot
    from issues.models import Issue, Note
    from issues.services import issue_iids_allocate
    from projects.models import Role, Visibility
    from projects.services import group_create, membership_set, project_create

    rng = random.Random(4711)
    words = vocabulary(rng)
    game = project_create(
        group=group_create(path="acme"), path="game", visibility=Visibility.PUBLIC,
        service_desk_enabled=True,
    )  # fmt: skip
    flood = project_create(group=group_create(path="flood"), path="inbox")
    reporter = User.objects.create_user(username="bob", email="bob@example.test")
    membership_set(user=reporter, project=game, role=Role.REPORTER)
    membership_set(user=reporter, project=flood, role=Role.REPORTER)
    bot = support_bot()

    def issues(project: Any, count: int) -> list[Issue]:
        made: list[Issue] = []
        for start in range(0, count, 2000):
            iids = issue_iids_allocate(project_id=project.pk, count=min(2000, count - start))
            batch = [
                Issue(
                    project=project, iid=iid, author=bot if iid % 3 else reporter,
                    title=f"{prose(rng, words, 4)} crashes" if iid % 7 == 0
                    else prose(rng, words, 5),
                    description=prose(rng, words, 60), confidential=iid % 3 == 0,
                    external_author="" if iid % 3 else f"c{iid}@customer.example",
                )
                for iid in iids
            ]  # fmt: skip
            made += Issue.objects.bulk_create(batch)
        return made

    def notes(made: list[Issue], texts: list[tuple[str, bool]]) -> None:
        batch = [
            Note(issue=issue, author=reporter, body=body, internal=internal)
            for issue in made
            for body, internal in texts
        ]
        Note.objects.bulk_create(batch, batch_size=2000)

    started = time.perf_counter()
    game_issues = issues(game, args.issues)
    notes(game_issues[::11], [("Refunded via PayPal.", False)])
    notes(game_issues, [(prose(rng, words, 30), False), (prose(rng, words, 20), True)])
    flood_issues = issues(flood, args.flood_issues)
    notes(flood_issues, [(prose(rng, words, 30), False)])
    # Long emails: distinct words (their vectors would be far over 1 MB whole), 100 KB each.
    long_notes = [
        Note(issue=flood_issues[n % len(flood_issues)], author=bot,
             body=" ".join(f"w{n * 20000 + k}x" for k in range(12_500))[:100_000])
        for n in range(args.flood_mb * 10)
    ]  # fmt: skip
    Note.objects.bulk_create(long_notes, batch_size=50)
    return {
        "game": game,
        "flood": flood,
        "reporter": reporter,
        "fill_s": round(time.perf_counter() - started, 1),
    }


def timed(run: Any, rounds: int) -> float:
    run()
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issues", type=int, default=2000, help="issues of the searched project")
    parser.add_argument("--flood-issues", type=int, default=20000, help="issues of the neighbour")
    parser.add_argument("--flood-mb", type=int, default=27, help="MB of long emails next door")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--without-indexes", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tenth of the data")
    args = parser.parse_args()
    if args.quick:
        args.issues, args.flood_issues, args.flood_mb = 200, 2000, 3

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
        from django.contrib.auth.models import AnonymousUser
        from django.core.management import call_command
        from django.db import connection

        from issues.filters import IssueFilters
        from issues.selectors import issue_tracker_for_user

        call_command("migrate", verbosity=0)
        world = fill(args)
        with connection.cursor() as cursor:
            if args.without_indexes:
                for index in SEARCH_INDEXES:
                    cursor.execute(f"DROP INDEX IF EXISTS {index}")
            cursor.execute("VACUUM ANALYZE")
            cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            size = cursor.fetchone()[0]
            cursor.execute(
                "SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid))"
                " FROM pg_stat_user_indexes WHERE indexrelname = ANY(%s) ORDER BY 1",
                [SEARCH_INDEXES],
            )
            index_sizes = dict(cursor.fetchall())

        def page(user: Any, project: Any, search: str) -> Any:
            return lambda: issue_tracker_for_user(
                user=user, project=project, filters=IssueFilters(state="all", search=search),
                page_number=1, per_page=50,
            )  # fmt: skip

        viewers = [
            ("reporter", world["reporter"], world["game"]),
            ("anonymous", AnonymousUser(), world["game"]),
            ("reporter, next door", world["reporter"], world["flood"]),
        ]
        rows = []
        for label, user, project in viewers:
            for search in SEARCHES:
                seconds = timed(page(user, project, search), args.rounds)
                found = page(user, project, search)().counts["all"]
                rows.append({"viewer": label, "project": project.full_path, "search": search,
                             "found": found, "ms": round(seconds * 1000, 1)})  # fmt: skip
        print(f"data: {args.issues} issues searched, {args.flood_issues} issues and "
              f"{args.flood_mb} MB of long emails next door (database {size}, filled in "
              f"{world['fill_s']} s); search indexes: "
              f"{', '.join(f'{k} {v}' for k, v in index_sizes.items()) or 'none'}")  # fmt: skip
        print(f"{'viewer':22} {'project':12} {'search':16} {'found':>6} {'ms':>9}")
        for row in rows:
            print(f"{row['viewer']:22} {row['project']:12} {row['search']:16} {row['found']:>6} "
                  f"{row['ms']:>9}")  # fmt: skip
        results = ROOT / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        out = {"args": vars(args), "indexes": index_sizes, "database_size": size,
               "fill_s": world["fill_s"], "pages": rows}  # fmt: skip
        (results / "search.json").write_text(json.dumps(out, indent=2) + "\n")
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
