"""Fault injection: kill and restart what the mail flows through; verify nothing is lost or doubled.

    .venv/bin/python bench/faults.py            # 500 messages per scenario, 10 kills, 60 s outage
    .venv/bin/python bench/faults.py --short    # 60 messages, 3 kills, 10 s outage (~3 minutes)

Starts its own throwaway PostgreSQL, Redis, Dovecot and SMTP server (tests/harness/services.py),
migrates, and runs the production worker layout as real processes: a poller worker on the
"mailbox" queue (prefork, 1 process, as bench/ingest.py), a 2-process worker on
"celery,outbound" (processing and sending) and a real ``celery beat`` with the project's own
schedule (CELERY_BEAT_SCHEDULE in servicedesk/settings.py): sweep-inbound every
SERVICEDESK_INBOUND_SWEEP_INTERVAL (5 s here), sweep-outbound every 30 s (fixed in settings),
poll-incoming_email every SERVICEDESK_IMAP_POLL_INTERVAL (5 s here). The sweepers' "stuck"
delays are shortened for these workers: SERVICEDESK_INBOUND_STUCK_AFTER=10 and
SERVICEDESK_OUTBOUND_STUCK_AFTER=15 (production: 120 and 600). A poll task keeps the mailbox
for SERVICEDESK_IMAP_LEASE=30 s and fetches SERVICEDESK_IMAP_BATCH=25 messages per FETCH, so
pollers hand over and fetches are many.

Each scenario gets a project of its own and a fresh batch of N messages: 70 % new issues
(plain, HTML, HTML-only, attachments, non-ASCII; each sender distinct, each causing a
*thank you*), 30 % replies to issues opened at set-up (half to the thank-you's reply-key
address, half threaded by In-Reply-To alone), delivered paced in chunks: MULTIAPPEND to the
IMAP INBOX, one message in five by LMTP (its new issues addressed To another address, routed by
the Delivered-To that Dovecot adds). A chunk whose delivery failed (Dovecot restarting) is
retried only for the messages an IMAP SEARCH does not find, so the benchmark never delivers a
message twice itself.

  a) kill -9 the processing worker (main process and pool) at K random moments, restarting it
     each time;
  b) restart Dovecot (master and every imap/lmtp process: connections drop) while the poller
     is fetching the batch (at ~35 % stored);
  c) restart PostgreSQL (fast shutdown) while the batch is processed (at ~30 % done);
  d) stop the SMTP server while thank-yous are due (after ~20 % of them were written) for
     --outage seconds, then start it again;
  e) two pollers on one mailbox at the same time: a second poller worker on "mailbox" (beat's
     poll tasks reach both; the Redis lock lets one poll, the other returns at once) and, to
     make the race real, a poller in this process that ignores the lock (a poller whose lock
     expired while it stalled) and fetches and stores concurrently with the worker's.

After each scenario the script waits until quiet (every message has a ledger row, no row
queued/processing, no email pending/sending, nothing new at the SMTP server for 2 s; at most
--timeout s) and verifies: each message has exactly one ledger row, ended with the expected
outcome (issue_created / note_added); one issue per new-issue Message-ID, one note per reply;
each email due (outbox row of the project) reached the SMTP server exactly once, counted by
Message-ID, or is recorded as failed with a reason; one thank-you row per new issue. A Message-ID
received twice is "duplicate after kill (at-least-once)" when a kill of the sending worker
falls between the copies and the row was recorded sent only after the last copy (the server
accepted, the worker died before recording it: the documented at-least-once case); any other
repeat is counted as an outbound duplicate, with the faults between its copies in the JSON.
All counts are taken again at the end, so late copies still count.

Prints a table and writes bench/results/faults.json (--short: faults-short.json). Exit status
0 when every message has one ledger row with the expected outcome (nothing lost, nothing
processed twice), no email is missing and no outbound duplicate is left unexplained by a fault;
1 otherwise; 3 when a service cannot be started here. Most of the run is waiting for recovery:
an email whose send task died is picked up again by sweep-outbound (every 30 s, rows older
than 30 s), so scenarios a, c and d take up to a minute each whatever N is.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import set_body  # noqa: E402
from tests.harness.services import (  # noqa: E402
    LOCALHOST,
    CeleryWorker,
    DovecotServer,
    PostgresServer,
    RedisServer,
    ServiceUnavailable,
    SmtpServer,
)

# Variables from the caller's shell that would change what is measured (as the test harness).
SCRUBBED_PREFIXES = ("EMAIL_", "ANYMAIL_", "SERVICEDESK_", "DATABASE_", "REDIS_", "CELERY_")
SCENARIOS = {
    "a": "kill -9 processing worker",
    "b": "restart Dovecot mid-fetch",
    "c": "restart PostgreSQL",
    "d": "SMTP server down",
    "e": "two pollers, one mailbox",
}
TOKEN = re.compile(r"fault-[a-e]-\d{5}")
EVENTS: list[dict[str, Any]] = []


def event(scenario: str, what: str, *, fault: bool = True, **details: Any) -> dict[str, Any]:
    """Record a fault (from ``t`` to ``until``; callers extend ``until`` when it lasts)."""
    now = time.time()
    EVENTS.append({"t": now, "until": now, "scenario": scenario, "event": what,
                   "fault": fault, **details})  # fmt: skip
    extra = ", ".join(f"{k} {v}" for k, v in details.items())
    print(f"  [{scenario}] {what}{' (' + extra + ')' if extra else ''}", flush=True)
    return EVENTS[-1]


# --- Messages ----------------------------------------------------------------------------------


@dataclass
class Seed:
    """An issue opened at set-up that the scenario's replies answer."""

    issue_id: int
    requester: str
    message_id: str  # the customer's original Message-ID (threads by In-Reply-To)
    thank_you_id: str  # our thank-you's Message-ID
    reply_to: str  # the thank-you's Reply-To: the reply-key address


@dataclass
class Mail:
    token: str
    kind: str  # "new" or "reply"
    message_id: str
    raw: bytes
    recipient: str  # LMTP envelope recipient
    lmtp: bool = False  # delivered by LMTP (else APPENDed)


def new_issue_mail(token: str, i: int, address: str, lmtp: bool) -> Mail:
    msg = EmailMessage()
    msg["From"] = f"Customer {token} <{token}@customers.example>"
    # By LMTP the routing key comes from Delivered-To, not from To.
    msg["To"] = "Support team <team@example.test>" if lmtp else address
    style = i % 5
    msg["Subject"] = (
        f"{token} " + ["plain", "html", "html-only", "attachment", "ünïcødé ça plante"][style]
    )
    message_id = make_msgid(domain="customers.example")
    msg["Message-ID"] = message_id
    body = f"Hello team,\n\nthe game crashes on level {i % 40} ({token}).\n\nThanks\n"
    set_body(msg, style, body, token)
    return Mail(token, "new", message_id, msg.as_bytes(), address, lmtp)


def reply_mail(token: str, i: int, seed: Seed, address: str, lmtp: bool) -> Mail:
    msg = EmailMessage()
    msg["From"] = seed.requester
    message_id = make_msgid(domain="customers.example")
    if i % 2 == 0:  # answers the thank-you: the reply key routes it
        msg["To"] = seed.reply_to
        msg["In-Reply-To"] = msg["References"] = seed.thank_you_id
        recipient = seed.reply_to
    else:  # a new email naming the original one: threaded by In-Reply-To
        msg["To"] = address
        msg["In-Reply-To"] = msg["References"] = seed.message_id
        recipient = address
    msg["Subject"] = "Re: still crashing"
    msg["Message-ID"] = message_id
    msg.set_content(
        f"Any news on this? Reference {token}.\n\n"
        "On Monday, Support <support@example.test> wrote:\n> Thank you for your email.\n"
    )
    return Mail(token, "reply", message_id, msg.as_bytes(), recipient, lmtp)


def batch(scenario: str, count: int, address: str, seeds: list[Seed]) -> list[Mail]:
    mails = []
    for i in range(count):
        token = f"fault-{scenario}-{i:05d}"
        lmtp = (i // 10) % 5 == 4  # one message in five, in runs of ten
        if i % 10 in (2, 5, 8):
            mails.append(reply_mail(token, i, seeds[i % len(seeds)], address, lmtp))
        else:
            mails.append(new_issue_mail(token, i, address, lmtp))
    return mails


def header_message_id(raw: bytes) -> str:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    headers = BytesHeaderParser().parsebytes(raw[: end if end >= 0 else len(raw)])
    return str(headers["Message-ID"] or "").strip()


# --- Delivery ----------------------------------------------------------------------------------


class Deliverer(threading.Thread):
    """Delivers mails in chunks spread over ``duration`` s: MULTIAPPEND, or LMTP if marked so.

    A failed chunk (server restarting) is retried after reconnecting, for the messages that an
    IMAP SEARCH does not find: a delivery whose answer was lost is never repeated.
    """

    def __init__(self, dovecot: DovecotServer, mails: list[Mail], duration: float, chunk: int):
        super().__init__(daemon=True)
        self.dovecot = dovecot
        self.mails = mails
        self.duration = duration
        self.chunk = chunk
        self.delivered: set[str] = set()
        self.errors: list[str] = []
        self.retried = 0
        self.client: Any = None
        self.first_at = self.last_at = 0.0

    def run(self) -> None:
        chunks = [self.mails[i : i + self.chunk] for i in range(0, len(self.mails), self.chunk)]
        start = time.monotonic()
        self.first_at = time.time()
        for n, chunk in enumerate(chunks):
            time.sleep(max(0.0, start + n * self.duration / len(chunks) - time.monotonic()))
            for lmtp, group in itertools.groupby(chunk, key=lambda m: m.lmtp):
                self._deliver(list(group), lmtp=lmtp)
        self.last_at = time.time()
        self._disconnect()

    def _deliver(self, chunk: list[Mail], *, lmtp: bool) -> None:
        deadline = time.monotonic() + 120
        todo = chunk
        while todo:
            try:
                if lmtp:
                    with smtplib.LMTP(LOCALHOST, self.dovecot.port_lmtp) as client:
                        for mail in todo:
                            client.sendmail("sender@customers.example", [mail.recipient], mail.raw)
                else:
                    if self.client is None:
                        self.client = self.dovecot.imap("support")
                    self.client.multiappend("INBOX", [mail.raw for mail in todo])
                self.delivered.update(mail.message_id for mail in todo)
                return
            except Exception as exc:  # the server is restarting: reconnect, see what arrived
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._disconnect()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                try:
                    todo = self._not_in_mailbox(todo)
                except Exception as search_exc:
                    self.errors.append(f"search: {type(search_exc).__name__}: {search_exc}")
                    self._disconnect()
                    continue
                self.delivered.update(m.message_id for m in chunk if m not in todo)
                self.retried += len(todo)

    def _not_in_mailbox(self, mails: list[Mail]) -> list[Mail]:
        client = self.dovecot.imap("support")
        try:
            client.select_folder("INBOX", readonly=True)
            return [m for m in mails if not client.search(["HEADER", "Message-ID", m.message_id])]
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def _disconnect(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.logout()
            self.client = None


class LocklessPoller(threading.Thread):
    """The mailroom's IMAP poller without the Redis lock, fetching while the worker's does."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.stored = 0
        self.fetches = 0
        self.errors: list[str] = []

    def run(self) -> None:
        from django.conf import settings
        from django.db import connection

        from mailroom.transport import ImapPoller

        poller = ImapPoller(settings.SERVICEDESK_MAILBOXES["incoming_email"])
        while not self.stop.is_set():
            try:
                if poller.client is None:
                    poller.connect()
                self.stored += poller.fetch_new()
                self.fetches += 1
                poller.idle_once(0.5)
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                poller.client = None
                connection.close()
                self.stop.wait(1)
        poller.close()
        connection.close()


# --- Processes -----------------------------------------------------------------------------------


@dataclass
class Beat:
    """A real ``celery beat`` process with the project's schedule, in its own process group."""

    base: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.base / "beat.log"

    def start(self) -> Beat:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "servicedesk", "beat",
                 "--loglevel", "INFO", "--schedule", str(self.base / "celerybeat-schedule")],
                cwd=str(ROOT), env={**os.environ, **self.env}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while b"beat: Starting" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable(f"celery beat did not start: see {self.log_path}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


# --- Observing ---------------------------------------------------------------------------------


class Arrivals:
    """What the SMTP server accepted: Message-ID → arrival times, read incrementally."""

    def __init__(self, smtp: SmtpServer) -> None:
        self.smtp = smtp
        self.seen = 0
        self.times: dict[str, list[float]] = defaultdict(list)
        self.parser = BytesHeaderParser()

    def update(self) -> int:
        with self.smtp._lock:
            new = self.smtp.messages[self.seen :]
        for mail in new:
            message_id = str(self.parser.parsebytes(mail.data)["Message-ID"] or "").strip()
            self.times[message_id].append(mail.received_at)
        self.seen += len(new)
        return self.seen


class Ledger:
    """Inbound ledger rows by the Message-ID in their raw bytes (parsed once per row)."""

    def __init__(self) -> None:
        self.message_id: dict[int, str] = {}

    def rows(self, since_pk: int, message_ids: set[str]) -> dict[str, list[int]]:
        from mailroom.models import InboundMessage

        pks = set(InboundMessage.objects.filter(pk__gt=since_pk).values_list("pk", flat=True))
        unknown = pks - self.message_id.keys()
        for start in range(0, len(unknown), 200):
            part = sorted(unknown)[start : start + 200]
            for pk, raw in InboundMessage.objects.filter(pk__in=part).values_list("pk", "raw"):
                self.message_id[pk] = header_message_id(bytes(raw))
        found: dict[str, list[int]] = defaultdict(list)
        for pk in sorted(pks):
            if self.message_id[pk] in message_ids:
                found[self.message_id[pk]].append(pk)
        return found


def db_retry(fn: Callable[[], Any], attempts: int = 60) -> Any:
    """Run a query; while PostgreSQL restarts, reconnect and try again."""
    from django.db import DatabaseError, connection

    for attempt in range(attempts):
        try:
            return fn()
        except DatabaseError:
            connection.close()
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    return None


@dataclass
class Scenario:
    key: str
    title: str
    project_id: int
    mails: list[Mail]
    ledger_start: int
    outbox_start: int
    started: float = 0.0
    quiet_at: float = 0.0
    timed_out: bool = False
    delivered: set[str] = field(default_factory=set)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def message_ids(self) -> set[str]:
        return {m.message_id for m in self.mails}


def wait_quiet(sc: Scenario, ledger: Ledger, arrivals: Arrivals, timeout: float) -> None:
    from issues.models import OutboundEmail
    from mailroom.models import InboundMessage

    deadline = time.monotonic() + timeout
    last: tuple[Any, ...] = ()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:

        def state() -> tuple[Any, ...]:
            rows = ledger.rows(sc.ledger_start, sc.message_ids)
            busy_in = InboundMessage.objects.filter(status__in=["queued", "processing"]).count()
            busy_out = OutboundEmail.objects.filter(status__in=["pending", "sending"]).count()
            return len(rows), busy_in, busy_out, arrivals.update()

        now = db_retry(state)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif now[:3] == (len(sc.mails), 0, 0) and time.monotonic() - stable_since >= 2:
            sc.quiet_at = time.time()
            return
        time.sleep(0.2)
    sc.timed_out = True
    sc.quiet_at = time.time()
    print(f"  [{sc.key}] not quiet after {timeout:.0f} s: ledger rows / busy in / busy out / "
          f"arrivals {last}")  # fmt: skip


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db_retry(predicate):
            return True
        time.sleep(0.05)
    return False


# --- Verification ------------------------------------------------------------------------------


def verify(sc: Scenario, ledger: Ledger, arrivals: Arrivals) -> dict[str, Any]:
    """Count what happened to the scenario's messages and emails (idempotent)."""
    from issues.models import Issue, Note, OutboundEmail
    from mailroom.models import InboundMessage

    arrivals.update()
    problems: list[str] = []
    rows_by_id = ledger.rows(sc.ledger_start, sc.message_ids)
    pks = [pk for pks in rows_by_id.values() for pk in pks]
    rows = {
        r["pk"]: r
        for r in InboundMessage.objects.filter(pk__in=pks).values(
            "pk", "status", "outcome", "reason", "last_error", "attempts"
        )
    }
    issues: dict[str, list[int]] = defaultdict(list)
    for pk, title in Issue.objects.filter(project_id=sc.project_id).values_list("pk", "title"):
        if TOKEN.fullmatch(title.split()[0] if title else ""):
            issues[title.split()[0]].append(pk)
    notes: Counter[str] = Counter()
    for body in Note.objects.filter(
        issue__project_id=sc.project_id, system=False, body__contains="fault-"
    ).values_list("body", flat=True):
        notes.update(set(TOKEN.findall(body)))

    lost = dup_in = ok = ledger_rows = 0
    outcomes: Counter[str] = Counter()
    new_issue_ids: list[int] = []
    for mail in sc.mails:
        found = rows_by_id.get(mail.message_id, [])
        ledger_rows += len(found)
        made = len(issues.get(mail.token, [])) if mail.kind == "new" else notes[mail.token]
        if mail.kind == "new":
            new_issue_ids += issues.get(mail.token, [])
        if len(found) > 1 or made > 1:
            dup_in += 1
            made_what = "issues" if mail.kind == "new" else "notes"
            problems.append(
                f"{mail.token} ({mail.kind}, {mail.message_id}): {len(found)} ledger rows, "
                f"{made} {made_what}"
            )
        for pk in found:
            outcomes[f"{rows[pk]['status']}/{rows[pk]['outcome'] or '-'}"] += 1
        expected = "issue_created" if mail.kind == "new" else "note_added"
        if not found or any(rows[pk]["status"] in ("queued", "processing") for pk in found):
            lost += 1
            problems.append(f"{mail.token} ({mail.kind}, {mail.message_id}) lost: ledger rows "
                            f"{[rows[pk] for pk in found]}")  # fmt: skip
        elif len(found) == 1 and rows[found[0]]["outcome"] == expected and made == 1:
            ok += 1
        elif len(found) == 1:
            r = rows[found[0]]
            problems.append(f"{mail.token} ({mail.kind}) ended {r['status']}/{r['outcome']} "
                            f"({r['reason'] or r['last_error']}); {made} made")  # fmt: skip
    not_delivered = len(sc.message_ids - sc.delivered)
    if not_delivered:
        problems.append(f"{not_delivered} message(s) could not be delivered by the benchmark")

    emails = list(
        OutboundEmail.objects.filter(issue__project_id=sc.project_id, pk__gt=sc.outbox_start)
        .order_by("pk")
        .values("pk", "kind", "issue_id", "message_id", "status", "last_error", "attempts",
                "sent_at")
    )  # fmt: skip
    thank_yous = Counter(e["issue_id"] for e in emails if e["kind"] == "thank_you")
    missing_rows = [i for i in new_issue_ids if thank_yous[i] == 0]
    double_rows = [i for i in new_issue_ids if thank_yous[i] > 1]
    kills = [e["t"] for e in EVENTS if e["event"] == "kill -9 processor"]
    faults = [e for e in EVENTS if e["fault"]]
    sent_once = dup_out = dup_kill = failed = missing = 0
    statuses: Counter[str] = Counter()
    duplicates: list[dict[str, Any]] = []
    for e in emails:
        statuses[e["status"]] += 1
        times = sorted(arrivals.times.get(e["message_id"], []))
        if len(times) == 1:
            sent_once += 1
            if e["status"] != "sent":
                problems.append(f"email {e['pk']} arrived once but is recorded {e['status']}")
        elif len(times) > 1:
            # At least once: every earlier copy was accepted but never recorded as sent (the
            # row's sent_at is after the last copy) and a fault falls between each two copies.
            sent_at = e["sent_at"].timestamp() if e["sent_at"] else 0.0
            recorded_late = sent_at >= times[-1]
            gaps = list(itertools.pairwise(times))
            gap_faults = [
                sorted({f["event"] for f in faults if f["t"] <= b and f["until"] >= a})
                for a, b in gaps
            ]
            after_kill = recorded_late and all(any(a <= k <= b for k in kills) for a, b in gaps)
            explained = recorded_late and all(gap_faults)
            duplicates.append({
                "email": e["pk"], "kind": e["kind"], "message_id": e["message_id"],
                "copies": len(times), "copies_at": times, "sent_at": sent_at,
                "attempts": e["attempts"], "status": e["status"],
                "sent_at_after_last_copy": recorded_late, "faults_between_copies": gap_faults,
                "at_least_once_after_kill": after_kill, "explained_by_fault": explained,
            })  # fmt: skip
            if after_kill:
                dup_kill += 1
            else:
                dup_out += 1
                problems.append(
                    f"email {e['pk']} ({e['kind']}, {e['message_id']}) arrived {len(times)} "
                    f"times; recorded sent after the last copy: {recorded_late}; faults "
                    f"between copies: {gap_faults}"
                )
        elif e["status"] == "failed" and e["last_error"]:
            failed += 1
        else:
            missing += 1
            problems.append(
                f"email {e['pk']} ({e['kind']}, {e['message_id']}) never arrived: "
                f"{e['status']}, {e['attempts']} attempts, {e['last_error'][:200]}"
            )
    if missing_rows:
        missing += len(missing_rows)
        problems.append(f"no thank-you written for issues {missing_rows[:20]}")
    if double_rows:
        dup_out += len(double_rows)
        problems.append(f"several thank-yous written for issues {double_rows[:20]}")
    unexplained = [d for d in duplicates if not d["explained_by_fault"]]
    return {
        "scenario": sc.key,
        "title": sc.title,
        "messages": len(sc.mails),
        "new_issues": sum(m.kind == "new" for m in sc.mails),
        "replies": sum(m.kind == "reply" for m in sc.mails),
        "not_delivered": not_delivered,
        "ledger_rows": ledger_rows,
        "outcomes_ok": ok,
        "lost": lost,
        "duplicates_inbound": dup_in,
        "outcomes": dict(outcomes),
        "emails_due": len(emails) + len(missing_rows),
        "sent_once": sent_once,
        "duplicates_outbound": dup_out,
        "duplicates_outbound_unexplained": len(unexplained) + len(double_rows),
        "duplicates_after_kill_at_least_once": dup_kill,
        "failed_with_reason": failed,
        "missing": missing,
        "outbox_statuses": dict(statuses),
        "outbox_retried": sum(e["attempts"] > 1 for e in emails),
        "duplicates": duplicates,
        "seconds": round(sc.quiet_at - sc.started, 1),
        "timed_out": sc.timed_out,
        "evidence": sc.evidence,
        "problems": problems,
    }


def failed(result: dict[str, Any]) -> bool:
    return bool(
        result["lost"]
        or result["duplicates_inbound"]
        or result["outcomes_ok"] != result["messages"]
        or result["missing"]
        or result["duplicates_outbound_unexplained"]
        or result["not_delivered"]
    )


def restart_dovecot(dovecot: DovecotServer) -> None:
    """Stop Dovecot with every process it forked, then start it again on the same ports.

    ``DovecotServer.restart()`` signals only the master: the imap processes serving open
    connections outlive it and the connections stay up. Signalling the process group ends them
    too, as a real restart (or crash) of the server does: clients get BYE and EOF.
    """
    assert dovecot.proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(dovecot.proc.pid, signal.SIGTERM)
    dovecot.proc.wait(timeout=20)
    dovecot.restart()  # the master is gone: this only starts it again


def in_parallel(*calls: Callable[[], Any]) -> None:
    """Run the calls in threads, wait for all; re-raise the first failure."""
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# --- Main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500, help="messages per scenario")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 moments in scenario a")
    parser.add_argument("--outage", type=float, default=60, help="SMTP outage in scenario d (s)")
    parser.add_argument("--timeout", type=float, default=300, help="longest wait for quiet (s)")
    parser.add_argument("--scenarios", default="abcde", help="which scenarios, e.g. 'ace'")
    parser.add_argument("--concurrency", type=int, default=2, help="processing processes")
    parser.add_argument("--seed", type=int, default=None, help="random seed (kill moments)")
    parser.add_argument(
        "--short", action="store_true", help="60 messages, 3 kills, 10 s outage (< 3 min)"
    )
    parser.add_argument(
        "--output", help="default bench/results/faults.json (--short: faults-short.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the services' files and logs")
    args = parser.parse_args()
    if not args.scenarios or not set(args.scenarios) <= set(SCENARIOS):
        parser.error(f"--scenarios: letters among {''.join(SCENARIOS)}")
    if args.short:
        args.messages, args.kills, args.outage = 60, 3, 10
        args.timeout = min(args.timeout, 150)
    name = "faults-short.json" if args.short else "faults.json"
    args.output = args.output or str(ROOT / "bench" / "results" / name)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    for name in list(os.environ):
        if name.startswith(SCRUBBED_PREFIXES):
            del os.environ[name]

    t_begin = time.time()
    base = Path(tempfile.mkdtemp(prefix="servicedesk-faults-"))
    base.chmod(0o755)
    started: list[Any] = []
    try:
        pg, redis = PostgresServer(base / "postgres"), RedisServer(base / "redis")
        dovecot, smtp = DovecotServer(base / "dovecot"), SmtpServer()
        started += [pg, redis, dovecot, smtp]
        try:
            in_parallel(pg.start, redis.start, dovecot.start, smtp.start)
        except (ServiceUnavailable, OSError, TimeoutError) as exc:
            print(f"service unavailable: {exc}", file=sys.stderr)
            return 3
        env = {
            "SERVICEDESK_ENV": "production",
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
            "SITE_URL": "https://servicedesk.example.test",
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            "REDIS_CACHE_URL": redis.url.rsplit("/", 1)[0] + "/1",
            "SERVICEDESK_VAR_DIR": str(base / "var"),
            "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
            "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
            "SERVICEDESK_INCOMING_EMAIL_HOST": LOCALHOST,
            "SERVICEDESK_INCOMING_EMAIL_PORT": str(dovecot.port_imap),
            "SERVICEDESK_INCOMING_EMAIL_USER": "support",
            "SERVICEDESK_INCOMING_EMAIL_PASSWORD": dovecot.password,
            "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "10",
            "SERVICEDESK_IMAP_LEASE": "30",
            "SERVICEDESK_IMAP_POLL_INTERVAL": "5",
            "SERVICEDESK_IMAP_BATCH": "25",
            "SERVICEDESK_INBOUND_SWEEP_INTERVAL": "5",
            "SERVICEDESK_INBOUND_STUCK_AFTER": "10",
            "SERVICEDESK_OUTBOUND_STUCK_AFTER": "15",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": LOCALHOST,
            "EMAIL_PORT": str(smtp.port),
            "DEFAULT_FROM_EMAIL": "support@example.test",
            "LOG_LEVEL": "WARNING",
            "DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "servicedesk.settings"
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from issues.models import Issue, OutboundEmail
        from mailroom.models import InboundMessage, MailboxState
        from mailroom.tasks import poll_mailbox
        from projects.services import group_create, project_create

        def migrate() -> None:
            from django.db import connection

            call_command("migrate", verbosity=0)
            connection.close()  # this thread's

        celery_dir = base / "celery"
        poller = CeleryWorker(celery_dir, env, name="poller", concurrency=1, queues="mailbox")
        processor = CeleryWorker(celery_dir, env, name="processor", concurrency=args.concurrency,
                                 queues="celery,outbound")  # fmt: skip
        beat = Beat(celery_dir, env)
        started += [poller, processor, beat]
        try:
            # The workers boot while the schema is created (they touch the database only when
            # a task comes); beat, which sends the first tasks, once it exists.
            in_parallel(migrate, poller.start, processor.start)
            beat.start()
        except ServiceUnavailable as exc:
            print(f"service unavailable: {exc}", file=sys.stderr)
            return 3
        group = group_create(path="faults")
        projects = {
            key: project_create(group=group, path=f"scenario-{key}", service_desk_enabled=True)
            for key in args.scenarios
        }
        mailbox = settings.SERVICEDESK_MAILBOXES["incoming_email"]
        addresses = {
            k: mailbox.address_for(p.service_desk.default_key) for k, p in projects.items()
        }

        print(f"services up in {time.time() - t_begin:.1f} s (seed {seed}); logs in {celery_dir}")

        # Set-up: issues for the replies to answer, opened through the real pipeline.
        per_project = max(4, args.messages // 25)
        seed_mails: dict[str, list[Mail]] = {
            k: [new_issue_mail(f"seed-{k}-{j:03d}", 0, addresses[k], False)
                for j in range(per_project)]
            for k in projects
        }  # fmt: skip
        all_seeds = [m for ms in seed_mails.values() for m in ms]
        poll_mailbox.delay("incoming_email")  # beat's first poll would come 5 s from now
        with dovecot.imap("support") as client:
            client.multiappend("INBOX", [m.raw for m in all_seeds])
        ready = wait_for(
            lambda: (
                InboundMessage.objects.filter(status="done").count() == len(all_seeds)
                and OutboundEmail.objects.filter(status="sent").count() == len(all_seeds)
            ),
            120,
        )
        if not ready:
            print("set-up: the seed issues were not all created and thanked within 120 s; "
                  f"see {celery_dir}", file=sys.stderr)  # fmt: skip
            return 1
        seeds: dict[str, list[Seed]] = {}
        for key, mails in seed_mails.items():
            seeds[key] = []
            for mail in mails:
                issue = Issue.objects.get(project=projects[key], title=mail.token + " plain")
                thanks = OutboundEmail.objects.get(issue=issue, kind="thank_you")
                seeds[key].append(Seed(issue.pk, f"{mail.token}@customers.example",
                                       mail.message_id, thanks.message_id,
                                       thanks.headers["Reply-To"]))  # fmt: skip
        print(f"set-up done at {time.time() - t_begin:.1f} s: {len(all_seeds)} seed issues")

        ledger = Ledger()
        arrivals = Arrivals(smtp)
        scenarios: list[Scenario] = []
        duration = max(3.0, args.messages / 60)  # delivery pace: ~60 messages/s

        def begin(key: str) -> Scenario:
            def starts() -> tuple[int, int]:
                last_in = InboundMessage.objects.order_by("-pk").values_list("pk", flat=True)
                last_out = OutboundEmail.objects.order_by("-pk").values_list("pk", flat=True)
                return (last_in.first() or 0, last_out.first() or 0)

            ledger_start, outbox_start = db_retry(starts)
            sc = Scenario(key, SCENARIOS[key], projects[key].pk,
                          batch(key, args.messages, addresses[key], seeds[key]),
                          ledger_start, outbox_start)  # fmt: skip
            scenarios.append(sc)
            print(f"\n{key}) {sc.title}: {len(sc.mails)} messages", flush=True)
            sc.started = time.time()
            return sc

        def deliver(sc: Scenario, seconds: float) -> Deliverer:
            chunk = max(5, min(25, len(sc.mails) // 12))
            deliverer = Deliverer(dovecot, sc.mails, seconds, chunk)
            deliverer.start()
            return deliverer

        def finish(sc: Scenario, deliverer: Deliverer) -> None:
            deliverer.join()
            sc.delivered = deliverer.delivered
            if deliverer.errors:
                sc.evidence["delivery_errors"] = len(deliverer.errors)
                sc.evidence["delivery_retried_messages"] = deliverer.retried
            wait_quiet(sc, ledger, arrivals, args.timeout)
            print(f"  quiet after {sc.quiet_at - sc.started:.1f} s", flush=True)

        def batch_stored(sc: Scenario) -> int:
            return len(ledger.rows(sc.ledger_start, sc.message_ids))

        def batch_done(sc: Scenario) -> int:
            return InboundMessage.objects.filter(
                pk__gt=sc.ledger_start, status="done", project_id=sc.project_id
            ).count()

        if "a" in args.scenarios:
            sc = begin("a")
            deliverer = deliver(sc, args.kills * 4.0)
            for k in range(args.kills):
                time.sleep(rng.uniform(0.5, 2.5))
                processor.kill()
                in_flight = db_retry(lambda: (
                    InboundMessage.objects.filter(status="processing").count(),
                    OutboundEmail.objects.filter(status="sending").count(),
                ))  # fmt: skip
                event("a", "kill -9 processor", n=k + 1, rows_processing=in_flight[0],
                      emails_sending=in_flight[1])  # fmt: skip
                processor.start()
            finish(sc, deliverer)
            sc.evidence["kills"] = args.kills

        if "b" in args.scenarios:
            sc = begin("b")
            offset = poller.log_path.stat().st_size
            deliverer = deliver(sc, duration)
            target = int(0.35 * len(sc.mails))
            if not wait_for(lambda: batch_stored(sc) >= target, 60):
                print("  the poller did not start fetching within 60 s")
            stored = db_retry(lambda: batch_stored(sc))
            fault = event("b", "restart dovecot", stored=stored, of=len(sc.mails))
            restart_dovecot(dovecot)
            fault["until"] = time.time()
            sc.evidence["stored_at_restart"] = stored
            finish(sc, deliverer)
            state = db_retry(lambda: MailboxState.objects.get(name="incoming_email"))
            sc.evidence["mailbox_consecutive_errors_after"] = state.consecutive_errors
            with open(poller.log_path, "rb") as log:
                log.seek(offset)
                # "mailbox incoming_email: <error> (retry n)": the poller saw the drop.
                sc.evidence["poller_imap_errors"] = log.read().count(b"mailbox incoming_email:")

        if "c" in args.scenarios:
            sc = begin("c")
            deliverer = deliver(sc, duration)
            target = int(0.30 * len(sc.mails))
            if not wait_for(lambda: batch_done(sc) >= target, 60):
                print("  processing did not start within 60 s")
            done = db_retry(lambda: batch_done(sc))
            fault = event("c", "restart postgres", done=done, of=len(sc.mails))
            pg.restart()
            fault["until"] = time.time()
            print(f"  [c] postgres back after {fault['until'] - fault['t']:.1f} s")
            sc.evidence["done_at_restart"] = done
            finish(sc, deliverer)

        if "d" in args.scenarios:
            sc = begin("d")
            deliverer = deliver(sc, max(duration, args.outage / 2))
            due = int(0.7 * len(sc.mails))  # thank-yous to come
            wait_for(
                lambda: (
                    OutboundEmail.objects.filter(
                        issue__project_id=sc.project_id, pk__gt=sc.outbox_start
                    ).count()
                    >= 0.2 * due
                ),
                60,
            )
            fault = event("d", "smtp server stopped", arrived_before=arrivals.update())
            smtp.stop()
            time.sleep(args.outage)
            smtp.start()
            fault["until"] = time.time()
            print(f"  [d] smtp server started again after {args.outage:g} s")
            finish(sc, deliverer)

        if "e" in args.scenarios:
            sc = begin("e")
            poller2 = CeleryWorker(celery_dir, env, name="poller2", concurrency=1,
                                   queues="mailbox").start()  # fmt: skip
            started.append(poller2)
            offsets = {w.name: w.log_path.stat().st_size for w in (poller, poller2)}
            rogue = LocklessPoller()
            rogue.start()
            event("e", "second poller worker and a lockless poller started", fault=False)
            deliverer = deliver(sc, duration)
            finish(sc, deliverer)
            rogue.stop.set()
            rogue.join(timeout=30)
            # A graceful stop waits for a poll task it may be running (lease 30 s): not here.
            threading.Thread(target=poller2.stop, daemon=True).start()
            busy = {}
            for w in (poller, poller2):
                with open(w.log_path, "rb") as log:
                    log.seek(offsets[w.name])
                    busy[w.name] = log.read().count(b"another worker is polling it")
            sc.evidence.update(
                lockless_poller_stored=rogue.stored, lockless_poller_fetches=rogue.fetches,
                lockless_poller_errors=len(rogue.errors),
                polls_refused_by_lock=busy,
            )  # fmt: skip

        # Late copies (a resend after a sweep) still count: take every count again at the end.
        time.sleep(1)
        results = [db_retry(lambda sc=sc: verify(sc, ledger, arrivals)) for sc in scenarios]
        arrivals.update()
        known = set(OutboundEmail.objects.values_list("message_id", flat=True))
        unknown = sorted(m for m in arrivals.times if m not in known)
        total = round(time.time() - t_begin, 1)
        bad = [r for r in results if failed(r)] or unknown
        report = {
            "ok": not bad,
            "seed": seed,
            "short": args.short,
            "messages_per_scenario": args.messages,
            "kills": args.kills,
            "smtp_outage_s": args.outage,
            "processing_concurrency": args.concurrency,
            "beat": "real celery beat process (project schedule)",
            "worker_env": {
                k: v
                for k, v in env.items()
                if k.startswith("SERVICEDESK_I") or k.endswith("STUCK_AFTER")
            },
            "unknown_message_ids_at_smtp": unknown,
            "total_seconds": total,
            "cpu_count": os.cpu_count(),
            "scenarios": results,
            "events": EVENTS,
        }
        print_table(results, args, total, seed)
        for r in results:
            for problem in r["problems"][:30]:
                print(f"  {r['scenario']}) {problem}")
        if unknown:
            print(f"  emails at the SMTP server that the outbox never wrote: {unknown[:10]}")
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\n{'OK' if not bad else 'FAILED'}: written to {output}")
        return 0 if not bad else 1
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                if isinstance(service, CeleryWorker):
                    service.kill()  # throwaway: no warm shutdown waiting out a poll's lease
                else:
                    service.stop()
        if args.keep:
            print(f"services' files (logs) kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def print_table(results: list[dict[str, Any]], args: argparse.Namespace, total: float,
                seed: int) -> None:  # fmt: skip
    columns = [
        ("scenario", lambda r: f"{r['scenario']}) {r['title']}"),
        ("messages", lambda r: r["messages"]),
        ("ledger rows", lambda r: r["ledger_rows"]),
        ("outcomes ok", lambda r: r["outcomes_ok"]),
        ("dup (in)", lambda r: r["duplicates_inbound"]),
        ("emails due", lambda r: r["emails_due"]),
        ("sent once", lambda r: r["sent_once"]),
        ("dup (out)", lambda r: r["duplicates_outbound"]),
        ("dup after kill (at-least-once)", lambda r: r["duplicates_after_kill_at_least_once"]),
        ("failed w/ reason", lambda r: r["failed_with_reason"]),
        ("missing", lambda r: r["missing"]),
        ("time", lambda r: f"{r['seconds']} s" + (" (timeout)" if r["timed_out"] else "")),
    ]
    cells = [[str(get(r)) for _, get in columns] for r in results]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, (name, _) in
              enumerate(columns)]  # fmt: skip
    print(f"\nFault injection ({args.messages} messages per scenario, {args.kills} kills, "
          f"{args.outage:g} s SMTP outage, seed {seed}; total {total} s)")  # fmt: skip
    print(
        "  "
        + "  ".join(
            name.rjust(w) if i else name.ljust(w)
            for i, ((name, _), w) in enumerate(zip(columns, widths, strict=True))
        )
    )
    for row in cells:
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


if __name__ == "__main__":
    sys.exit(main())
