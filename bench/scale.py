"""The scale benchmark: every page of the tracker at 10 000 and 100 000 issues, over real HTTP.

    .venv/bin/python bench/scale.py [--scale 0.1 | --small] [--requests 200] [--rebuild]

**The data set** is built with the product's own models (``bulk_create`` in batches of 5 000;
the secondary indexes of the big tables dropped before and rebuilt after, then VACUUM ANALYZE)
in a throwaway PostgreSQL (tests/harness/services.py). Default shape, one instance:

- group ``scale`` with two projects: ``scale/p100k`` (100 000 issues) and ``scale/p10k``
  (10 000), Service Desk on; 20 people who are members of both (1 Owner, 3 Maintainers,
  8 Developers, 6 Reporters, 2 Guests), among them the personas ``bob`` (Reporter) and
  ``mia`` (Maintainer), password ``bench-password-1234``; the Support Bot authors email issues;
- issues: titles of 5 words (one in seven ends with "crashes"), descriptions of 40, from
  5 000 random words; a third came by email (``external_author`` c<iid>@customer.example,
  the requester as email participant, one in four with a CC); one in ten confidential; ~80 %
  closed (the newest tenth mostly open); 0-3 of the project's 10 labels; 0-2 assignees
  (Reporter+); created over the 730 days before the build day, updated up to weeks later;
- notes: 0-20 per issue (10 on average: ~1 000 000 + 100 000), a quarter internal, one in
  twenty a system note; on email issues half the public notes are the customer's (the Support
  Bot with ``external_author``). In each project one issue has exactly 500 notes and one
  exactly 10 (their iids are printed and written to the results); the rare word "quokka" is
  in the first note of 5 random issues (if that is a comment);
- the inbound ledger (mailroom ``InboundMessage``): 116 000 rows, one ``issue_created`` per
  email issue, the rest ``note_added`` on email issues and a few rejected/ignored/spam, with
  raw bytes of 1-5 KB (one in twenty with a 15 KB attachment);
- the outbound ledger (issues ``OutboundEmail``): 330 000 rows, one thank-you per email issue,
  the rest new-note, team and issue-closed emails, text ~0.7 KB and HTML ~1.5 KB;
- pending To-Dos for the assignees of open issues.

``--scale`` multiplies every count (not the 500-note thread): ``--scale 0.1`` (or ``--small``)
is 10 000 + 1 000 issues. The generator is seeded: the same shape gives the same rows (dates
are relative to the build day). After a build the database is saved with ``pg_dump -Fc`` to
``var/bench/scale-<shape>.dump`` (with ``.json`` beside it: personas, paths, iids); later runs
restore it unless ``--rebuild``. The shape key changes with the shape, this builder's
version and the set of migrations.

**The pages** are served by gunicorn as in production (``SERVICEDESK_ENV=production``, DEBUG
off, 2 workers of 4 threads, as the Dockerfile starts it) on 127.0.0.1 and a free port, with
``bench/scale_settings.py``: the product's settings plus ``bench/querycount.py``, a middleware
that puts each response's SQL query count in a header. Sessions sign in through the real
login form: ``bob`` (Reporter) for the tracker, the issue pages, the dashboard and the home
page; ``mia`` (Maintainer) for the ledgers and the members page. Each page is requested
``--requests`` times after 3 warm-up requests, one at a time over a keep-alive connection (or
until ``--budget`` seconds are spent on it), and p50/p95/max (ms, measured by the client) and
the query count are printed per page and project.

The inbound figures are ``bench/ingest.py``'s: its bench/results/ingest.json is folded in as
it is (with its date), if present. Writes bench/results/scale.json and
bench/results/scale-<shape>.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.services import (  # noqa: E402
    PostgresServer,
    RedisServer,
    free_port,
    postgres_bindir,
    wait_until,
)

BUILDER_VERSION = 1  # bump when the generator below changes what it writes
SEED = 4711
BATCH = 5000
PASSWORD = "bench-password-1234"  # noqa: S105 (a throwaway database's personas)
REPORTER, MAINTAINER = "bob", "mia"
SPAN_DAYS = 730
# The tables whose secondary indexes are dropped while filling and rebuilt after.
BIG_TABLES = [
    "issues_issue", "issues_note", "issues_issue_labels", "issues_issue_assignees",
    "issues_emailparticipant", "issues_outboundemail", "mailroom_inboundmessage",
    "notifications_todo",
]  # fmt: skip
ROLES = ["owner"] + ["maintainer"] * 3 + ["developer"] * 8 + ["reporter"] * 6 + ["guest"] * 2
LABELS = ["bug", "billing", "crash", "feature", "question", "account", "refund", "urgent",
          "docs", "duplicate"]  # fmt: skip
ATTACHMENT = base64.encodebytes(random.Random(1).randbytes(11_000)).decode()


@dataclass(frozen=True)
class Shape:
    big: int = 100_000  # issues of scale/p100k
    small: int = 10_000  # issues of scale/p10k
    notes_per_issue: int = 10  # on average (0 to twice that)
    long_thread: int = 500
    inbound: int = 116_000
    outbound: int = 330_000

    @classmethod
    def scaled(cls, scale: float) -> Shape:
        return cls(
            big=max(20, round(100_000 * scale)), small=max(10, round(10_000 * scale)),
            inbound=round(116_000 * scale), outbound=round(330_000 * scale),
        )  # fmt: skip

    def key(self) -> str:
        """``<issues>-<hash of the shape, the builder's version and the migrations>``."""
        migrations = sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("*/migrations/0*.py"))
        digest = hashlib.sha256(
            json.dumps([asdict(self), BUILDER_VERSION, migrations]).encode()
        ).hexdigest()[:10]
        return f"{self.big + self.small}-{digest}"


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


@contextmanager
def explicit_dates(*models: Any) -> Iterator[None]:
    """Let ``bulk_create`` write the dates we give (auto_now/auto_now_add off meanwhile)."""
    fields = [
        field for model in models for field in model._meta.concrete_fields
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    ]  # fmt: skip
    saved = [(field, field.auto_now, field.auto_now_add) for field in fields]
    for field in fields:
        field.auto_now = field.auto_now_add = False
    try:
        yield
    finally:
        for field, auto_now, auto_now_add in saved:
            field.auto_now, field.auto_now_add = auto_now, auto_now_add


def _batched(rows: Iterator[Any], model: Any) -> int:
    batch: list[Any] = []
    written = 0
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            model.objects.bulk_create(batch)
            written += len(batch)
            batch = []
    if batch:
        model.objects.bulk_create(batch)
        written += len(batch)
    return written


def raw_email(n: int, sender: str, to: str, subject: str, body: str, attach: bool) -> bytes:
    """A plausible email as received (headers of a real mailer; sometimes an attachment)."""
    head = (
        f"Return-Path: <{sender}>\r\nReceived: from mx{n % 7}.customer.example (mx{n % 7}."
        f"customer.example [192.0.2.{n % 250}])\r\n\tby mail.desk.example with ESMTPS id "
        f"{n:012x}\r\n\tfor <{to}>; Mon, 1 Jan 2024 10:00:00 +0000\r\nDKIM-Signature: v=1; "
        f"a=rsa-sha256; d=customer.example; s=s1; bh={'A' * 43}=; b={'B' * 340}\r\n"
        f"From: Customer {n} <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <in-{n}@customer.example>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
    )
    if not attach:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()
    return (
        head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: '
        "text/plain; charset=utf-8\r\n\r\n" + body + "\r\n--b1\r\nContent-Type: image/png\r\n"
        'Content-Disposition: attachment; filename="screen.png"\r\nContent-Transfer-Encoding:'
        " base64\r\n\r\n" + ATTACHMENT + "--b1--\r\n"
    ).encode()


def build(shape: Shape) -> dict[str, Any]:
    """Fill the (migrated, empty) database; returns what the benchmark needs to know.

    The caller runs VACUUM ANALYZE after (it cannot run inside a transaction, as in a test)."""
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from accounts.models import User
    from accounts.selectors import support_bot
    from issues.models import EmailParticipant, Issue, Label, Note, OutboundEmail
    from issues.services import issue_iids_allocate
    from mailroom.models import InboundMessage
    from notifications.models import Todo
    from projects.models import Role
    from projects.services import group_create, membership_set, project_create

    rng = random.Random(SEED)
    words = vocabulary(rng)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=SPAN_DAYS)

    def prose(count: int) -> str:
        return " ".join(rng.choices(words, k=count))

    group = group_create(path="scale")
    projects = {
        "p100k": project_create(group=group, path="p100k", service_desk_enabled=True),
        "p10k": project_create(group=group, path="p10k", service_desk_enabled=True),
    }
    password = make_password(PASSWORD)
    people: list[tuple[User, str]] = []
    for number, role in enumerate(ROLES):
        username = {1: MAINTAINER, 12: REPORTER}.get(number, f"{role[:3]}{number}")
        user = User.objects.create(
            username=username, email=f"{username}@desk.example", password=password,
            name=username.title(),
        )  # fmt: skip
        people.append((user, role))
        for project in projects.values():
            membership_set(user=user, project=project, role=Role[role.upper()])
    team = [user for user, _ in people]
    assignable = [user for user, role in people if role != "guest"]
    bot = support_bot()

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " WHERE t.relname = ANY(%s) AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            [BIG_TABLES],
        )
        dropped = cursor.fetchall()
        for name, _ in dropped:
            cursor.execute(f'DROP INDEX "{name}"')

    counts: dict[str, int] = {}

    def add(name: str, number: int) -> None:
        counts[name] = counts.get(name, 0) + number

    started = time.perf_counter()
    world: dict[str, Any] = {"projects": {}}

    def fill_project(key: str, size: int) -> None:
        project = projects[key]
        labels = Label.objects.bulk_create(
            Label(project=project, title=title, color=f"#{(i * 2654435761) % 0xFFFFFF:06x}")
            for i, title in enumerate(LABELS)
        )
        add("labels", len(labels))
        # The two threads of known length: email issues in the middle, not confidential.
        long_iid = size // 2 - (size // 2) % 3 + 1
        short_iid = long_iid + 3
        mid_iid = long_iid + 6  # the address searched for
        issues: list[tuple[int, int, datetime, datetime, str, str]] = []
        for first in range(0, size, BATCH):
            iids = issue_iids_allocate(project_id=project.pk, count=min(BATCH, size - first))
            batch = []
            for iid in iids:
                created = start + timedelta(days=SPAN_DAYS * (iid - 1) / size,
                                            seconds=rng.randrange(3600))  # fmt: skip
                updated = min(end, created + timedelta(days=rng.expovariate(1 / 5)))
                email = f"c{iid}@customer.example" if iid % 3 == 1 else ""
                closed = rng.random() < (0.85 if iid < 0.9 * size else 0.3)
                title = f"{prose(4)} crashes" if iid % 7 == 0 else prose(5)
                batch.append(Issue(
                    project=project, iid=iid, title=title, description=prose(40),
                    author=bot if email else rng.choice(team),
                    confidential=rng.random() < 0.1 and iid not in (long_iid, short_iid),
                    external_author=email,
                    external_author_name=f"Customer {iid}" if email else "",
                    state="closed" if closed else "opened",
                    last_public_by=rng.choice(["customer", "team"]) if email else "",
                    last_public_at=updated if email else None,
                    created_at=created, updated_at=updated,
                    closed_at=updated if closed else None,
                    closed_by=rng.choice(assignable) if closed else None,
                ))  # fmt: skip
            made = Issue.objects.bulk_create(batch)
            issues += [(issue.pk, issue.iid, issue.created_at, issue.updated_at,
                        issue.external_author, issue.title) for issue in made]  # fmt: skip
        add("issues", len(issues))
        opened = {pk for pk, *_ in Issue.objects.filter(
            project=project, state="opened").values_list("pk")}  # fmt: skip

        def labelled() -> Iterator[Any]:
            for pk, *_ in issues:
                for label in rng.sample(labels, rng.choice([0, 0, 1, 1, 1, 2, 2, 3])):
                    yield Issue.labels.through(issue_id=pk, label_id=label.pk)

        add("issue labels", _batched(labelled(), Issue.labels.through))
        assigned: list[tuple[int, Any]] = []

        def assignees() -> Iterator[Any]:
            for pk, *_ in issues:
                for user in rng.sample(assignable, rng.choice([0] * 4 + [1] * 5 + [2])):
                    if pk in opened:
                        assigned.append((pk, user))
                    yield Issue.assignees.through(issue_id=pk, user_id=user.pk)

        add("issue assignees", _batched(assignees(), Issue.assignees.through))

        def participants() -> Iterator[Any]:
            for pk, iid, created, _, email, _ in issues:
                if email:
                    yield EmailParticipant(issue_id=pk, email=email, name=f"Customer {iid}",
                                           created_at=created)  # fmt: skip
                    if iid % 4 == 1:
                        yield EmailParticipant(issue_id=pk, email=f"cc{iid}@partner.example",
                                               created_at=created)  # fmt: skip

        add("email participants", _batched(participants(), EmailParticipant))

        rare = set(rng.sample(range(len(issues)), 5))

        def notes() -> Iterator[Any]:
            for index, (pk, iid, created, updated, email, _) in enumerate(issues):
                if iid == long_iid:
                    count = shape.long_thread
                elif iid == short_iid:
                    count = 10
                else:
                    count = rng.randint(0, 2 * shape.notes_per_issue)
                step = (updated - created) / (count + 1)
                for n in range(count):
                    at = created + step * (n + 1)
                    kind = rng.random()
                    if kind < 0.05:
                        yield Note(issue_id=pk, author=rng.choice(assignable), system=True,
                                   body=rng.choice(["closed", "reopened",
                                                    f"added ~{rng.choice(LABELS)} label"]),
                                   created_at=at, updated_at=at)  # fmt: skip
                        continue
                    internal = kind < 0.3
                    customer = bool(email) and not internal and rng.random() < 0.5
                    body = prose(25)
                    if n == 0 and index in rare:
                        body = f"A quokka in the level, {prose(10)}"
                        add("notes with quokka", 1)
                    yield Note(
                        issue_id=pk, author=bot if customer else rng.choice(team),
                        external_author=email if customer else "", body=body,
                        internal=internal, created_at=at, updated_at=at,
                    )  # fmt: skip

        add("notes", _batched(notes(), Note))

        share = size / (shape.big + shape.small)
        email_issues = [issue for issue in issues if issue[4]]
        inbound_total = round(shape.inbound * share)
        address = f"{key}@desk.example"

        offset = len(issues)

        def inbound() -> Iterator[Any]:
            for n in range(inbound_total):
                number = offset * 10 + n
                if n < len(email_issues):
                    pk, _, at, _, email, title = email_issues[n]
                    outcome, subject = "issue_created", title
                else:
                    pk, _, at, _, email, title = rng.choice(email_issues)
                    outcome, subject = "note_added", f"Re: {title}"
                    at += timedelta(hours=rng.randint(1, 48))
                    if rng.random() < 0.03:
                        outcome = rng.choice(["rejected", "ignored", "spam"])
                        pk, email, subject = None, f"x{n}@elsewhere.example", prose(5)
                raw = raw_email(number, email, address, subject,
                                prose(rng.randint(150, 600)), rng.random() < 0.05)  # fmt: skip
                yield InboundMessage(
                    transport="imap", mailbox="service_desk_email", uid_validity=1,
                    uid=number, raw=raw, size=len(raw), received_at=at,
                    message_id=f"<in-{number}@customer.example>", from_address=email,
                    subject=subject[:998], status="done", outcome=outcome,
                    processed_at=at + timedelta(milliseconds=rng.randint(20, 900)),
                    attempts=1, project=project, issue_id=pk,
                )  # fmt: skip

        add("inbound ledger", _batched(inbound(), InboundMessage))

        outbound_total = round(shape.outbound * share)

        def outbound() -> Iterator[Any]:
            for n in range(outbound_total):
                if n < len(email_issues):
                    pk, iid, at, _, email, title = email_issues[n]
                    kind, recipient = "thank_you", email
                else:
                    pk, iid, at, _, email, title = rng.choice(email_issues)
                    kind = rng.choices(["new_note", "team", "issue_closed"], [6, 3, 1])[0]
                    recipient = (
                        f"{rng.choice(team).username}@desk.example" if kind == "team" else email
                    )
                    at += timedelta(hours=rng.randint(1, 48))
                text = prose(90)
                status = "failed" if rng.random() < 0.02 else "sent"
                yield OutboundEmail(
                    kind=kind, project=project, issue_id=pk, recipient=recipient,
                    from_email=f"Service Desk <{address}>", subject=f"Re: {title}"[:998],
                    message_id=f"<out-{key}-{n}@desk.example>",
                    headers={"In-Reply-To": f"<in-{n}@customer.example>",
                             "References": f"<issue-{iid}@desk.example>"},
                    body_text=f"{text}\n\n-- \nReply to this email to comment on the issue.\n",
                    body_html=f'<!doctype html><html><body style="font-family: sans-serif">'
                    f'<div class="note"><p>{text}</p></div><hr><p style="color: #666">Reply '
                    f"to this email to comment on the issue. <a href=\"https://desk.example/"
                    f'unsubscribe">Unsubscribe</a></p>{"<p></p>" * 80}</body></html>',
                    status=status, attempts=1 if status == "sent" else 5,
                    last_error="550 5.1.1 mailbox unavailable" if status == "failed" else "",
                    created_at=at, sent_at=at + timedelta(seconds=1) if status == "sent"
                    else None,
                )  # fmt: skip

        add("outbound ledger", _batched(outbound(), OutboundEmail))

        def todos() -> Iterator[Any]:
            for pk, user in assigned:
                yield Todo(user=user, issue_id=pk, action="assigned",
                           actor=rng.choice(team), created_at=end)  # fmt: skip

        add("todos", _batched(todos(), Todo))
        world["projects"][key] = {
            "path": project.full_path, "issues": size, "long_thread_iid": long_iid,
            "ten_notes_iid": short_iid, "address": f"c{mid_iid}@customer.example",
        }  # fmt: skip

    with explicit_dates(Issue, Note, EmailParticipant, InboundMessage, OutboundEmail, Todo):
        for key, size in (("p100k", shape.big), ("p10k", shape.small)):
            fill_project(key, size)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # inside a transaction (a test)
        for _, definition in dropped:
            cursor.execute(definition)
    world.update({
        "counts": counts, "fill_s": round(filled, 1),
        "index_s": round(time.perf_counter() - started, 1),
        "personas": {"reporter": REPORTER, "maintainer": MAINTAINER, "password": PASSWORD},
        "members": len(people), "built_on": end.date().isoformat(),
        "prefix": sorted(words, key=len)[-1][:5],
    })  # fmt: skip
    return world


# --- The database: built once, then restored from its dump ------------------------------------


def _pg_env(pg: PostgresServer) -> dict[str, str]:
    return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres"}


def _setup_django(pg: PostgresServer, base: Path) -> None:
    os.environ.update({
        "SERVICEDESK_ENV": "development", "DEBUG": "0", "LOG_LEVEL": "WARNING",
        "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
        "DATABASE_URL": pg.url, "SERVICEDESK_VAR_DIR": str(base / "var"),
    })  # fmt: skip
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")
    import django

    django.setup()


def database(args: argparse.Namespace, shape: Shape, pg: PostgresServer, base: Path) -> dict:
    """Restore the cached dump of this shape, or build it (and dump it)."""
    cache = ROOT / "var" / "bench"
    dump, meta = cache / f"scale-{shape.key()}.dump", cache / f"scale-{shape.key()}.json"
    bindir = postgres_bindir()
    if dump.exists() and meta.exists() and not args.rebuild:
        started = time.perf_counter()
        subprocess.run(
            [str(bindir / "pg_restore"), "--no-owner", "-j", "2", "-d", "servicedesk", str(dump)],
            check=True, env=_pg_env(pg),
        )  # fmt: skip
        pg.execute("VACUUM ANALYZE", dbname="servicedesk")
        world = json.loads(meta.read_text())
        world["restored_s"] = round(time.perf_counter() - started, 1)
        print(f"restored {dump.name} in {world['restored_s']} s")
        return world
    _setup_django(pg, base)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    print(f"building the data set {shape} …", flush=True)
    world = build(shape)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    world["index_s"] = round(world["index_s"] + time.perf_counter() - started, 1)
    connection.close()
    print(f"filled in {world['fill_s']} s, indexes and VACUUM ANALYZE in {world['index_s']} s")
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial = dump.with_suffix(".dump.part")
    subprocess.run(
        [str(bindir / "pg_dump"), "-Fc", "-Z", "1", "-d", "servicedesk", "-f", str(partial)],
        check=True, env=_pg_env(pg),
    )  # fmt: skip
    partial.rename(dump)
    world["dump_s"] = round(time.perf_counter() - started, 1)
    meta.write_text(json.dumps(world, indent=2) + "\n")
    print(f"saved {dump} ({dump.stat().st_size // 2**20} MB) in {world['dump_s']} s")
    return world


def database_facts(pg: PostgresServer) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres",
                         dbname="servicedesk") as conn:  # fmt: skip
        size = conn.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
        tables = conn.execute(
            "SELECT relname, n_live_tup, pg_size_pretty(pg_total_relation_size(relid))"
            " FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC LIMIT 8"
        ).fetchall()
        version = conn.execute("SHOW server_version").fetchone()
    return {
        "database_size": size[0] if size else "",
        "postgresql": version[0] if version else "",
        "largest_tables": {name: {"rows": rows, "size": total} for name, rows, total in tables},
    }


# --- The web server and the signed-in client --------------------------------------------------


class Gunicorn:
    """gunicorn as the Dockerfile starts it (2 workers), production settings + the counter."""

    def __init__(self, base: Path, pg: PostgresServer, redis: RedisServer) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "SERVICEDESK_ENV": "production", "DEBUG": "0", "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "bench.scale_settings",
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
            "SITE_URL": f"http://127.0.0.1:{self.port}", "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url, "SERVICEDESK_VAR_DIR": str(base / "var"),
            "STATIC_ROOT": str(base / "static"), "WEB_CONCURRENCY": "2",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])),
        }  # fmt: skip
        self.base = base
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gunicorn:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT, env=self.env, check=True,
        )  # fmt: skip
        log = open(self.base / "gunicorn.log", "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "servicedesk.wsgi",
                "--bind", f"127.0.0.1:{self.port}", "--workers", "2", "--threads", "4",
                "--timeout", "60", "--graceful-timeout", "30", "--worker-tmp-dir", "/dev/shm",  # noqa: S108 (as the Dockerfile)
                "--no-control-socket", "--access-logfile", str(self.base / "access.log"),
                "--error-logfile", "-",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                log_text = (self.base / "gunicorn.log").read_text()[-3000:]
                raise RuntimeError(f"gunicorn exited:\n{log_text}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/-/health")
                return connection.getresponse().status == 200
            except OSError:
                return False

        wait_until(answers, 60, "gunicorn to answer")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Client:
    """One browser: a keep-alive connection and its cookies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=130)

    def request(self, method: str, path: str, form: dict[str, str] | None = None
                ) -> tuple[int, http.client.HTTPResponse, bytes, float]:  # fmt: skip
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                content = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=130)
                if attempt == 2:
                    raise
        elapsed = (time.perf_counter() - started) * 1000
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, response, content, elapsed

    def sign_in(self, username: str, password: str) -> None:
        status, _, page, _ = self.request("GET", "/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise RuntimeError(f"the login form did not come ({status})")
        status, _, _, _ = self.request("POST", "/login/", {
            "csrfmiddlewaretoken": token.group(1).decode(), "username": username,
            "password": password,
        })  # fmt: skip
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"signing in as {username} failed ({status})")


# --- The pages --------------------------------------------------------------------------------


def pages(world: dict[str, Any], key: str) -> list[tuple[str, str, str]]:
    """(page, persona, URL) of one project."""
    project = world["projects"][key]
    base = f"/{project['path']}/-/issues/"
    issue = base + "{}/"
    # Each list page names its size: the size chosen last is remembered in the session.
    tracker = base + "?per_page=20&"
    developer = "dev4"  # an author and an assignee of many issues
    return [
        ("issue list, open", "reporter", tracker + "state=opened"),
        ("issue list, closed", "reporter", tracker + "state=closed"),
        ("issue list, all", "reporter", tracker + "state=all"),
        ("issue list, open, 50 a page", "reporter", base + "?state=opened&per_page=50"),
        ("sorted by updated", "reporter", tracker + "state=opened&sort=updated_desc"),
        ("filter: label", "reporter", tracker + "state=opened&label=bug"),
        ("filter: assignee", "reporter", tracker + f"state=opened&assignee={developer}"),
        ("filter: author", "reporter", tracker + f"state=opened&author={developer}"),
        ("filter: confidential", "reporter", tracker + "state=opened&confidential=yes"),
        ("search: full-text word", "reporter", tracker + "state=all&search=crash"),
        ("search: substring", "reporter", tracker + f"state=all&search={world['prefix']}"),
        ("search: rare word", "reporter", tracker + "state=all&search=quokka"),
        ("search: an address", "reporter",
         tracker + "state=all&search=" + urllib.parse.quote(project["address"])),
        ("issue page, 10 notes", "reporter", issue.format(project["ten_notes_iid"])),
        ("issue page, 500 notes", "reporter", issue.format(project["long_thread_iid"])),
        ("dashboard", "reporter", f"/{project['path']}/-/dashboard/"),
        ("inbound ledger", "maintainer", f"/{project['path']}/-/inbound/"),
        ("outbound ledger", "maintainer", f"/{project['path']}/-/outbound/"),
        ("members", "maintainer", f"/{project['path']}/-/members/"),
    ]  # fmt: skip


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def time_page(client: Client, url: str, requests: int, budget: float) -> dict[str, Any]:
    status = 0
    for _ in range(3):  # warm-up
        status, _, _, _ = client.request("GET", url)
    if status != 200:
        return {"status": status, "n": 0}
    timings: list[float] = []
    queries: list[int] = []
    query_ms: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + budget
    while len(timings) < requests and time.monotonic() < deadline:
        status, response, _, elapsed = client.request("GET", url)
        statuses[status] = statuses.get(status, 0) + 1
        timings.append(elapsed)
        queries.append(int(response.headers.get("X-Bench-Queries", "-1")))
        query_ms.append(float(response.headers.get("X-Bench-Query-Ms", "0")))
    return {
        "status": status if len(statuses) == 1 else statuses, "n": len(timings),
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(percentile(timings, 0.95), 1), "max_ms": round(max(timings), 1),
        "queries": statistics.median_low(queries), "queries_max": max(queries),
        "sql_ms_p50": round(statistics.median(query_ms), 1),
    }  # fmt: skip


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def inbound_figures(path: Path) -> dict[str, Any] | None:
    """bench/ingest.py's own results, as it wrote them (this script does not run it)."""
    if not path.exists():
        return None
    return {
        "source": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "written": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds"),
        "results": json.loads(path.read_text()),
    }


def show(row: dict[str, Any] | None) -> str:
    if not row or not row.get("n"):
        return f"{'status ' + str(row.get('status')) if row else '—':>30}"
    return (f"{row['p50_ms']:>7.0f} {row['p95_ms']:>7.0f} {row['max_ms']:>7.0f} "
            f"{row['queries']:>4} {row['n']:>4}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every count")
    parser.add_argument("--small", action="store_true", help="the same as --scale 0.1")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds per page at most (fewer requests then)")  # fmt: skip
    parser.add_argument("--rebuild", action="store_true", help="build even if a dump exists")
    parser.add_argument("--build-only", action="store_true", help="build or restore, no timing")
    parser.add_argument("--only", default="", help="time only the pages whose name has this")
    parser.add_argument("--ingest", type=Path, default=ROOT / "bench" / "results" / "ingest.json",
                        help="bench/ingest.py's results to fold in")  # fmt: skip
    args = parser.parse_args()
    if args.small:
        args.scale = 0.1
    shape = Shape.scaled(args.scale)

    base = Path(tempfile.mkdtemp(prefix="servicedesk-scale-"))
    base.chmod(0o755)
    pg = redis = server = None
    try:
        pg = PostgresServer(base / "postgres").start()
        world = database(args, shape, pg, base)
        facts = database_facts(pg)
        print(f"database {facts['database_size']} (PostgreSQL {facts['postgresql']}): "
              + ", ".join(f"{name} {t['rows']} rows {t['size']}"
                          for name, t in facts["largest_tables"].items()))  # fmt: skip
        if args.build_only:
            return
        redis = RedisServer(base / "redis").start()
        server = Gunicorn(base, pg, redis).start()
        clients = {"reporter": Client(server.port), "maintainer": Client(server.port)}
        for persona, client in clients.items():
            client.sign_in(world["personas"][persona], world["personas"]["password"])
        load_before = load()
        results: list[dict[str, Any]] = []
        plan = [("home (project list)", "reporter", "/", "instance")]
        for key in ("p10k", "p100k"):
            plan += [(page, persona, url, key) for page, persona, url in pages(world, key)]
        for page, persona, url, key in plan:
            if args.only and args.only not in page:
                continue
            row = time_page(clients[persona], url, args.requests, args.budget)
            results.append({"page": page, "project": key, "persona": persona, "url": url,
                            **row, "load": load()})  # fmt: skip
            print(f"  {key:8} {page:24} {show(row)}   load {load()}", flush=True)
        load_after = load()
    finally:
        if server is not None:
            server.stop()
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)

    inbound = inbound_figures(args.ingest)
    by_page: dict[str, dict[str, Any]] = {}
    for row in results:
        by_page.setdefault(row["page"], {})[row["project"]] = row
    print(f"\n{shape.big + shape.small} issues ({shape}); {facts['database_size']}; "
          f"gunicorn 2 workers, production settings; load before {load_before}, "
          f"after {load_after}")  # fmt: skip
    head = f"{'p50':>7} {'p95':>7} {'max':>7} {'SQL':>4} {'n':>4}"
    print(f"{'page':24} | {'10 k-issue project (ms)':^30} | {'100 k-issue project (ms)':^30}")
    print(f"{'':24} | {head} | {head}")
    for page, row in by_page.items():
        if "instance" in row:  # one page for the instance (both projects)
            print(f"{page:24} | {show(row['instance'])} | {'(the instance: both projects)':^30}")
        else:
            print(f"{page:24} | {show(row.get('p10k'))} | {show(row.get('p100k'))}")
    if inbound:
        print(f"inbound: {inbound['source']} ({inbound['written']}): "
              + json.dumps(inbound["results"])[:400])  # fmt: skip
    else:
        print(f"inbound: no {args.ingest} (run bench/ingest.py first)")
    out = {
        "shape": asdict(shape), "shape_key": shape.key(), "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "world": world, **facts, "server": "gunicorn, 2 workers x 4 threads, SERVICEDESK_ENV="
        "production, DEBUG off", "load_before": load_before, "load_after": load_after,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pages": results, "inbound": inbound,
    }  # fmt: skip
    target = ROOT / "bench" / "results"
    target.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=2) + "\n"
    (target / "scale.json").write_text(text)
    (target / f"scale-{shape.key()}.json").write_text(text)


if __name__ == "__main__":
    main()
