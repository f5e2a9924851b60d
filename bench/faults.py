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
message twice itself. The scenarios (SCENARIOS below):

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
  f) Microsoft Graph outage: the second mailbox (service_desk_email) is read over Graph from
     the test harness's fake Graph server (tests/harness/fake_graph.py, real HTTP on
     127.0.0.1, poll_interval 1 s); while its messages are being fetched (at ~30 % stored) the
     server stops (connections refused) for --outage/2 s, then answers every request with 500
     for --outage/2 s, then recovers;
  g) token expiry mid-run on the Graph mailbox: tokens live 3 s (each renewed before it runs
     out), and three times while the messages are fetched every token is revoked (Graph
     answers 401 until the poller gets a new one).

Scenarios f and g deliver to the fake Graph mailbox instead of Dovecot (no LMTP): the same mix
of new issues and replies, addressed to the project's contact+key address.

After each scenario the script waits until quiet (every message has a ledger row, no row
queued/processing, no email pending/sending, nothing new at the SMTP server for 2 s; at most
--timeout s), observes what became of every message and every email due, and judges it with
``bench.fault_oracle.oracle``, whose docstring states the rules: nothing lost, nothing doubled
(an email received twice only as at-least-once delivery across a fault), no email failed unless
the scenario made the SMTP server refuse it for good. All counts are taken again at the end, so
late copies still count.

Prints a table and writes bench/results/faults.json (--short: faults-short.json). Exit status
0 when the oracle passes every scenario and the SMTP server received nothing the outbox never
wrote; 1 otherwise; 3 when a service cannot be started here. Most of the run is waiting for
recovery: an email whose send task died is picked up again by sweep-outbound (every 30 s, rows
older than 30 s), so scenarios a, c and d take up to a minute each whatever N is.
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

from bench.fault_oracle import (  # noqa: E402
    Email,
    Fault,
    LedgerRow,
    Message,
    Observation,
    Verdict,
    oracle,
)
from bench.ingest import set_body  # noqa: E402
from tests.harness.fake_graph import FakeGraphServer  # noqa: E402
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
TOKEN = re.compile(r"fault-[a-z]-\d{5}")
GRAPH_USER = "contact@example.test"
EVENTS: list[dict[str, Any]] = []
KILL_PROCESSOR = "kill -9 processor"


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


def batch(
    scenario: str, count: int, address: str, seeds: list[Seed], *, lmtp_too: bool = True
) -> list[Mail]:
    mails = []
    for i in range(count):
        token = f"fault-{scenario}-{i:05d}"
        lmtp = lmtp_too and (i // 10) % 5 == 4  # one message in five, in runs of ten
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


class GraphDeliverer(threading.Thread):
    """Puts mails into the fake Graph mailbox in chunks spread over ``duration`` s, as Exchange
    receives them whatever its API is doing."""

    def __init__(self, graph: FakeGraphServer, mails: list[Mail], duration: float, chunk: int):
        super().__init__(daemon=True)
        self.graph = graph
        self.mails = mails
        self.duration = duration
        self.chunk = chunk
        self.delivered: set[str] = set()
        self.errors: list[str] = []
        self.retried = 0

    def run(self) -> None:
        chunks = [self.mails[i : i + self.chunk] for i in range(0, len(self.mails), self.chunk)]
        start = time.monotonic()
        for n, chunk in enumerate(chunks):
            time.sleep(max(0.0, start + n * self.duration / len(chunks) - time.monotonic()))
            for mail in chunk:
                self.graph.add(mail.raw, user=GRAPH_USER)
                self.delivered.add(mail.message_id)


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
class ScenarioRun:
    """One scenario as it runs: its messages, where its rows start, what it saw."""

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
    state: dict[str, Any] = field(default_factory=dict)  # what a fault's steps hand on
    # Recipients the scenario made the SMTP server refuse for good: their emails may fail.
    permanent_refusals: set[str] = field(default_factory=set)

    @property
    def message_ids(self) -> set[str]:
        return {m.message_id for m in self.mails}


def wait_quiet(sc: ScenarioRun, ledger: Ledger, arrivals: Arrivals, timeout: float) -> None:
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


# --- Observing what became of a scenario ----------------------------------------------------------


def observe(sc: ScenarioRun, ledger: Ledger, arrivals: Arrivals) -> Observation:
    """Read what happened to the scenario's messages and emails into the oracle's terms."""
    arrivals.update()
    rows = ledger.rows(sc.ledger_start, sc.message_ids)
    issues = _issues_by_token(sc.project_id)
    notes = _notes_by_token(sc.project_id)
    ledger_rows = _ledger_rows([pk for pks in rows.values() for pk in pks])
    messages = tuple(
        Message(
            token=mail.token,
            kind=mail.kind,
            message_id=mail.message_id,
            delivered=mail.message_id in sc.delivered,
            rows=tuple(ledger_rows[pk] for pk in rows.get(mail.message_id, [])),
            made=len(issues.get(mail.token, [])) if mail.kind == "new" else notes[mail.token],
        )
        for mail in sc.mails
    )
    emails = _emails(sc, arrivals)
    opened = [pk for mail in sc.mails if mail.kind == "new" for pk in issues.get(mail.token, [])]
    thank_yous = Counter(_thank_you_issue_ids(sc))
    faults = tuple(
        Fault(e["event"], e["t"], e["until"], kill=e["event"] == KILL_PROCESSOR)
        for e in EVENTS
        if e["fault"]
    )
    return Observation(messages, emails, {pk: thank_yous[pk] for pk in opened}, faults,
                       frozenset(sc.permanent_refusals))  # fmt: skip


def _issues_by_token(project_id: int) -> dict[str, list[int]]:
    from issues.models import Issue

    issues: dict[str, list[int]] = defaultdict(list)
    for pk, title in Issue.objects.filter(project_id=project_id).values_list("pk", "title"):
        if TOKEN.fullmatch(title.split()[0] if title else ""):
            issues[title.split()[0]].append(pk)
    return issues


def _notes_by_token(project_id: int) -> Counter[str]:
    from issues.models import Note

    notes: Counter[str] = Counter()
    for body in Note.objects.filter(
        issue__project_id=project_id, system=False, body__contains="fault-"
    ).values_list("body", flat=True):
        notes.update(set(TOKEN.findall(body)))
    return notes


def _ledger_rows(pks: list[int]) -> dict[int, LedgerRow]:
    from mailroom.models import InboundMessage

    return {
        pk: LedgerRow(status, outcome or "", reason or last_error)
        for pk, status, outcome, reason, last_error in InboundMessage.objects.filter(
            pk__in=pks
        ).values_list("pk", "status", "outcome", "reason", "last_error")
    }


def _emails(sc: ScenarioRun, arrivals: Arrivals) -> tuple[Email, ...]:
    from issues.models import OutboundEmail

    rows = (
        OutboundEmail.objects.filter(issue__project_id=sc.project_id, pk__gt=sc.outbox_start)
        .order_by("pk")
        .values("pk", "kind", "recipient", "message_id", "status", "last_error", "attempts",
                "sent_at")
    )  # fmt: skip
    return tuple(
        Email(
            **{**row, "sent_at": row["sent_at"].timestamp() if row["sent_at"] else None},
            arrivals=tuple(sorted(arrivals.times.get(row["message_id"], []))),
        )
        for row in rows
    )


def _thank_you_issue_ids(sc: ScenarioRun) -> list[int]:
    from issues.models import OutboundEmail

    return list(
        OutboundEmail.objects.filter(
            issue__project_id=sc.project_id, pk__gt=sc.outbox_start, kind="thank_you"
        ).values_list("issue_id", flat=True)
    )


COUNTS = (
    "messages", "not_delivered", "ledger_rows", "outcomes_ok", "lost", "duplicates_inbound",
    "wrong_outcome", "emails_due", "sent_once", "misrecorded", "duplicates_outbound",
    "duplicates_outbound_unexplained", "duplicates_after_kill_at_least_once",
    "failed_as_injected", "failed_wrongly", "missing",
)  # fmt: skip


def scenario_result(sc: ScenarioRun, seen: Observation, verdict: Verdict) -> dict[str, Any]:
    """The JSON record of one scenario: the oracle's counts and what explains them."""
    statuses = Counter(e.status for e in seen.emails)
    outcomes = Counter(f"{r.status}/{r.outcome or '-'}" for m in seen.messages for r in m.rows)
    return {
        "scenario": sc.key,
        "title": sc.title,
        "ok": verdict.ok,
        **{name: verdict.counts[name] for name in COUNTS},
        "new_issues": sum(m.kind == "new" for m in sc.mails),
        "replies": sum(m.kind == "reply" for m in sc.mails),
        "outcomes": dict(outcomes),
        "outbox_statuses": dict(statuses),
        "outbox_retried": sum(e.attempts > 1 for e in seen.emails),
        "permanent_refusals": sorted(seen.permanent_refusals),
        "duplicates": verdict.duplicates,
        "seconds": round(sc.quiet_at - sc.started, 1),
        "timed_out": sc.timed_out,
        "evidence": sc.evidence,
        "problems": verdict.problems,
    }


# --- The faults -----------------------------------------------------------------------------------
#
# A scenario is data (SCENARIOS below): how long its messages take to deliver, and up to three
# steps — before delivery starts, during delivery (the fault), and once all is quiet again.


@dataclass
class Run:
    """What the scenarios of one run share: its options, services, projects and observers."""

    args: argparse.Namespace
    rng: random.Random
    services: Services
    projects: dict[str, Any]
    addresses: dict[str, str]
    seeds: dict[str, list[Seed]]
    ledger: Ledger
    arrivals: Arrivals
    graph_addresses: dict[str, str] = field(default_factory=dict)  # service_desk_email's

    @property
    def pace(self) -> float:
        """Seconds over which a scenario's messages are delivered: ~60 messages/s."""
        return max(3.0, self.args.messages / 60)


Step = Callable[[Run, ScenarioRun], None]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    delivery_seconds: Callable[[Run], float]
    before: Step | None = None  # before the first message is delivered
    during: Step | None = None  # while the messages are delivered: the fault
    after: Step | None = None  # once all is quiet again: undo, gather evidence
    graph: bool = False  # delivered to the Microsoft Graph mailbox (else Dovecot)


def kill_processor_repeatedly(run: Run, sc: ScenarioRun) -> None:
    processor = run.services.processor
    for k in range(run.args.kills):
        time.sleep(run.rng.uniform(0.5, 2.5))
        processor.kill()
        in_flight = db_retry(_in_flight)
        event(sc.key, KILL_PROCESSOR, n=k + 1, rows_processing=in_flight[0],
              emails_sending=in_flight[1])  # fmt: skip
        processor.start()
    sc.evidence["kills"] = run.args.kills


def _in_flight() -> tuple[int, int]:
    from issues.models import OutboundEmail
    from mailroom.models import InboundMessage

    return (
        InboundMessage.objects.filter(status="processing").count(),
        OutboundEmail.objects.filter(status="sending").count(),
    )


def note_poller_log_offset(run: Run, sc: ScenarioRun) -> None:
    sc.state["poller_log_offset"] = run.services.poller.log_path.stat().st_size


def restart_dovecot_mid_fetch(run: Run, sc: ScenarioRun) -> None:
    def stored() -> int:
        return len(run.ledger.rows(sc.ledger_start, sc.message_ids))

    if not wait_for(lambda: stored() >= int(0.35 * len(sc.mails)), 60):
        print("  the poller did not start fetching within 60 s")
    count = db_retry(stored)
    fault = event(sc.key, "restart dovecot", stored=count, of=len(sc.mails))
    restart_dovecot(run.services.dovecot)
    fault["until"] = time.time()
    sc.evidence["stored_at_restart"] = count


def count_poller_errors(run: Run, sc: ScenarioRun) -> None:
    from mailroom.models import MailboxState

    state = db_retry(lambda: MailboxState.objects.get(name="incoming_email"))
    sc.evidence["mailbox_consecutive_errors_after"] = state.consecutive_errors
    with open(run.services.poller.log_path, "rb") as log:
        log.seek(sc.state["poller_log_offset"])
        # "mailbox incoming_email: <error> (retry n)": the poller saw the drop.
        sc.evidence["poller_imap_errors"] = log.read().count(b"mailbox incoming_email:")


def restart_postgres_mid_processing(run: Run, sc: ScenarioRun) -> None:
    from mailroom.models import InboundMessage

    def done() -> int:
        return InboundMessage.objects.filter(
            pk__gt=sc.ledger_start, status="done", project_id=sc.project_id
        ).count()

    if not wait_for(lambda: done() >= int(0.30 * len(sc.mails)), 60):
        print("  processing did not start within 60 s")
    count = db_retry(done)
    fault = event(sc.key, "restart postgres", done=count, of=len(sc.mails))
    run.services.pg.restart()
    fault["until"] = time.time()
    print(f"  [{sc.key}] postgres back after {fault['until'] - fault['t']:.1f} s")
    sc.evidence["done_at_restart"] = count


def stop_smtp_while_thank_yous_are_due(run: Run, sc: ScenarioRun) -> None:
    from issues.models import OutboundEmail

    due = int(0.7 * len(sc.mails))  # thank-yous to come
    written = OutboundEmail.objects.filter(issue__project_id=sc.project_id, pk__gt=sc.outbox_start)
    wait_for(lambda: written.count() >= 0.2 * due, 60)
    smtp = run.services.smtp
    fault = event(sc.key, "smtp server stopped", arrived_before=run.arrivals.update())
    smtp.stop()
    time.sleep(run.args.outage)
    smtp.start()
    fault["until"] = time.time()
    print(f"  [{sc.key}] smtp server started again after {run.args.outage:g} s")


def start_second_and_lockless_pollers(run: Run, sc: ScenarioRun) -> None:
    services = run.services
    poller2 = CeleryWorker(services.celery_dir, services.env, name="poller2", concurrency=1,
                           queues="mailbox").start()  # fmt: skip
    services.started.append(poller2)
    sc.state["offsets"] = {w.name: w.log_path.stat().st_size for w in (services.poller, poller2)}
    sc.state["poller2"] = poller2
    sc.state["rogue"] = rogue = LocklessPoller()
    rogue.start()
    event(sc.key, "second poller worker and a lockless poller started", fault=False)


def stop_extra_pollers(run: Run, sc: ScenarioRun) -> None:
    rogue, poller2 = sc.state["rogue"], sc.state["poller2"]
    rogue.stop.set()
    rogue.join(timeout=30)
    # A graceful stop waits for a poll task it may be running (lease 30 s): not here.
    threading.Thread(target=poller2.stop, daemon=True).start()
    busy = {}
    for worker in (run.services.poller, poller2):
        with open(worker.log_path, "rb") as log:
            log.seek(sc.state["offsets"][worker.name])
            busy[worker.name] = log.read().count(b"another worker is polling it")
    sc.evidence.update(
        lockless_poller_stored=rogue.stored, lockless_poller_fetches=rogue.fetches,
        lockless_poller_errors=len(rogue.errors), polls_refused_by_lock=busy,
    )  # fmt: skip


def _wait_until_stored(run: Run, sc: ScenarioRun, share: float) -> int:
    def stored() -> int:
        return len(run.ledger.rows(sc.ledger_start, sc.message_ids))

    if not wait_for(lambda: stored() >= int(share * len(sc.mails)), 60):
        print("  the poller did not start fetching within 60 s")
    return int(db_retry(stored))


def note_graph_log_offset(run: Run, sc: ScenarioRun) -> None:
    sc.state["graph_log_offset"] = len(run.services.graph.log())
    note_poller_log_offset(run, sc)


def graph_outage(run: Run, sc: ScenarioRun) -> None:
    graph = run.services.graph
    count = _wait_until_stored(run, sc, 0.3)
    half = run.args.outage / 2
    fault = event(sc.key, "graph server down (connections refused)", stored=count,
                  of=len(sc.mails))  # fmt: skip
    graph.stop()
    time.sleep(half)
    graph.outage_status = 500
    graph.start()
    fault["until"] = time.time()
    fault = event(sc.key, "graph server answers 500", stored=db_retry(
        lambda: len(run.ledger.rows(sc.ledger_start, sc.message_ids))))  # fmt: skip
    time.sleep(half)
    graph.outage_status = None
    fault["until"] = time.time()
    print(f"  [{sc.key}] graph server back after {run.args.outage:g} s")
    sc.evidence["stored_at_outage"] = count


def short_lived_tokens(run: Run, sc: ScenarioRun) -> None:
    note_graph_log_offset(run, sc)
    run.services.graph.token_lifetime = 3


def revoke_tokens_mid_run(run: Run, sc: ScenarioRun) -> None:
    count = _wait_until_stored(run, sc, 0.3)
    for n in range(3):
        fault = event(sc.key, "graph tokens revoked", n=n + 1, stored=count, of=len(sc.mails))
        run.services.graph.expire_tokens()
        time.sleep(1)
        fault["until"] = time.time()
        count = db_retry(lambda: len(run.ledger.rows(sc.ledger_start, sc.message_ids)))


def count_graph_requests(run: Run, sc: ScenarioRun) -> None:
    from mailroom.models import MailboxState

    graph = run.services.graph
    graph.token_lifetime = 3600
    requests = graph.log()[sc.state["graph_log_offset"] :]
    statuses = Counter(f"{r.kind} {r.status}" for r in requests)
    state = db_retry(lambda: MailboxState.objects.filter(name="service_desk_email").first())
    sc.evidence.update(
        graph_requests=dict(sorted(statuses.items())),
        graph_tokens_issued=statuses["token 200"],
        graph_401=sum(n for k, n in statuses.items() if k.endswith(" 401")),
        graph_500=sum(n for k, n in statuses.items() if k.endswith(" 500")),
        mailbox_consecutive_errors_after=state.consecutive_errors if state else None,
    )  # fmt: skip
    with open(run.services.poller.log_path, "rb") as log:
        log.seek(sc.state["poller_log_offset"])
        # "mailbox service_desk_email: <error> (retry n)": passes the fault ended, with backoff.
        sc.evidence["poller_graph_errors"] = log.read().count(b"mailbox service_desk_email: ")


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("a", "kill -9 processing worker", lambda run: run.args.kills * 4.0,
                 during=kill_processor_repeatedly),
        Scenario("b", "restart Dovecot mid-fetch", lambda run: run.pace,
                 before=note_poller_log_offset, during=restart_dovecot_mid_fetch,
                 after=count_poller_errors),
        Scenario("c", "restart PostgreSQL", lambda run: run.pace,
                 during=restart_postgres_mid_processing),
        Scenario("d", "SMTP server down", lambda run: max(run.pace, run.args.outage / 2),
                 during=stop_smtp_while_thank_yous_are_due),
        Scenario("e", "two pollers, one mailbox", lambda run: run.pace,
                 before=start_second_and_lockless_pollers, after=stop_extra_pollers),
        Scenario("f", "Graph outage", lambda run: max(run.pace, run.args.outage),
                 before=note_graph_log_offset, during=graph_outage, after=count_graph_requests,
                 graph=True),
        Scenario("g", "Graph token expiry mid-run", lambda run: max(run.pace, 8.0),
                 before=short_lived_tokens, during=revoke_tokens_mid_run,
                 after=count_graph_requests, graph=True),
    )
}  # fmt: skip


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


# --- Running a scenario ---------------------------------------------------------------------------


def run_scenario(run: Run, scenario: Scenario) -> ScenarioRun:
    """Deliver a fresh batch of messages while the scenario's fault happens; wait until quiet."""
    sc = begin(run, scenario)
    if scenario.before is not None:
        scenario.before(run, sc)
    chunk = max(5, min(25, len(sc.mails) // 12))
    deliverer: Deliverer | GraphDeliverer
    if scenario.graph:
        deliverer = GraphDeliverer(run.services.graph, sc.mails, scenario.delivery_seconds(run),
                                   chunk)  # fmt: skip
    else:
        deliverer = Deliverer(run.services.dovecot, sc.mails, scenario.delivery_seconds(run),
                              chunk)  # fmt: skip
    deliverer.start()
    if scenario.during is not None:
        scenario.during(run, sc)
    deliverer.join()
    sc.delivered = deliverer.delivered
    if deliverer.errors:
        sc.evidence["delivery_errors"] = len(deliverer.errors)
        sc.evidence["delivery_retried_messages"] = deliverer.retried
    wait_quiet(sc, run.ledger, run.arrivals, run.args.timeout)
    print(f"  quiet after {sc.quiet_at - sc.started:.1f} s", flush=True)
    if scenario.after is not None:
        scenario.after(run, sc)
    return sc


def begin(run: Run, scenario: Scenario) -> ScenarioRun:
    from issues.models import OutboundEmail
    from mailroom.models import InboundMessage

    def starts() -> tuple[int, int]:
        last_in = InboundMessage.objects.order_by("-pk").values_list("pk", flat=True)
        last_out = OutboundEmail.objects.order_by("-pk").values_list("pk", flat=True)
        return (last_in.first() or 0, last_out.first() or 0)

    ledger_start, outbox_start = db_retry(starts)
    key = scenario.key
    address = run.graph_addresses[key] if scenario.graph else run.addresses[key]
    mails = batch(key, run.args.messages, address, run.seeds[key], lmtp_too=not scenario.graph)
    sc = ScenarioRun(key, scenario.title, run.projects[key].pk, mails, ledger_start,
                     outbox_start)  # fmt: skip
    print(f"\n{key}) {sc.title}: {len(sc.mails)} messages", flush=True)
    sc.started = time.time()
    return sc


def judge(run: Run, sc: ScenarioRun) -> dict[str, Any]:
    seen = db_retry(lambda: observe(sc, run.ledger, run.arrivals))
    return scenario_result(sc, seen, oracle(seen))


# --- Services and set-up --------------------------------------------------------------------------


@dataclass
class Services:
    """The throwaway services and worker processes of a run, and everything to stop at its end."""

    base: Path
    pg: PostgresServer
    redis: RedisServer
    dovecot: DovecotServer
    smtp: SmtpServer
    graph: FakeGraphServer
    env: dict[str, str] = field(default_factory=dict)
    poller: CeleryWorker | Any = None
    processor: CeleryWorker | Any = None
    started: list[Any] = field(default_factory=list)

    @property
    def celery_dir(self) -> Path:
        return self.base / "celery"

    def stop(self) -> None:
        for service in reversed(self.started):
            with contextlib.suppress(Exception):
                if isinstance(service, CeleryWorker):
                    service.kill()  # throwaway: no warm shutdown waiting out a poll's lease
                else:
                    service.stop()


def start_servers(base: Path) -> Services:
    services = Services(base, PostgresServer(base / "postgres"), RedisServer(base / "redis"),
                        DovecotServer(base / "dovecot"), SmtpServer(),
                        FakeGraphServer())  # fmt: skip
    services.started += [services.pg, services.redis, services.dovecot, services.smtp,
                         services.graph]  # fmt: skip
    in_parallel(services.pg.start, services.redis.start, services.dovecot.start,
                services.smtp.start, services.graph.start)  # fmt: skip
    return services


def worker_env(services: Services) -> dict[str, str]:
    redis, dovecot, graph = services.redis, services.dovecot, services.graph
    return {
        "SERVICEDESK_ENV": "production",
        "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
        "SITE_URL": "https://servicedesk.example.test",
        "DATABASE_URL": services.pg.url,
        "REDIS_URL": redis.url,
        "REDIS_CACHE_URL": redis.url.rsplit("/", 1)[0] + "/1",
        "SERVICEDESK_VAR_DIR": str(services.base / "var"),
        "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
        "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
        "SERVICEDESK_INCOMING_EMAIL_HOST": LOCALHOST,
        "SERVICEDESK_INCOMING_EMAIL_PORT": str(dovecot.port_imap),
        "SERVICEDESK_INCOMING_EMAIL_USER": "support",
        "SERVICEDESK_INCOMING_EMAIL_PASSWORD": dovecot.password,
        "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "10",
        # The second mailbox is read over Microsoft Graph, from the fake Graph server.
        "SERVICEDESK_SERVICE_DESK_EMAIL_ENABLED": "true",
        "SERVICEDESK_SERVICE_DESK_EMAIL_ADDRESS": "contact+%{key}@example.test",
        "SERVICEDESK_SERVICE_DESK_EMAIL_INBOX_METHOD": "microsoft_graph",
        "SERVICEDESK_SERVICE_DESK_EMAIL_USER": GRAPH_USER,
        **{
            f"SERVICEDESK_SERVICE_DESK_EMAIL_INBOX_OPTIONS_{k}": v
            for k, v in {
                "TENANT_ID": graph.tenant_id,
                "CLIENT_ID": graph.client_id,
                "CLIENT_SECRET": graph.client_secret,
                "POLL_INTERVAL": "1",
                "AZURE_AD_ENDPOINT": graph.url,
                "GRAPH_ENDPOINT": graph.url,
            }.items()
        },
        "SERVICEDESK_IMAP_LEASE": "30",
        "SERVICEDESK_IMAP_POLL_INTERVAL": "5",
        "SERVICEDESK_IMAP_BATCH": "25",
        "SERVICEDESK_INBOUND_SWEEP_INTERVAL": "5",
        "SERVICEDESK_INBOUND_STUCK_AFTER": "10",
        "SERVICEDESK_OUTBOUND_STUCK_AFTER": "15",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": LOCALHOST,
        "EMAIL_PORT": str(services.smtp.port),
        "DEFAULT_FROM_EMAIL": "support@example.test",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }


def start_django(env: dict[str, str]) -> None:
    """This process talks to the same database as the workers (to deliver, observe, judge)."""
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "servicedesk.settings"
    import django

    django.setup()


def start_workers(services: Services, concurrency: int) -> None:
    """Migrate while the workers boot (they touch the database only when a task comes), then
    start beat, which sends the first tasks."""
    from django.core.management import call_command
    from django.db import connection

    def migrate() -> None:
        call_command("migrate", verbosity=0)
        connection.close()  # this thread's

    env, celery_dir = services.env, services.celery_dir
    # One process per polled mailbox (IMAP and Graph): each poll task holds its mailbox for
    # its lease.
    services.poller = CeleryWorker(celery_dir, env, name="poller", concurrency=2,
                                   queues="mailbox")  # fmt: skip
    services.processor = CeleryWorker(celery_dir, env, name="processor", concurrency=concurrency,
                                      queues="celery,outbound")  # fmt: skip
    beat = Beat(celery_dir, env)
    services.started += [services.poller, services.processor, beat]
    in_parallel(migrate, services.poller.start, services.processor.start)
    beat.start()


def create_projects(keys: str) -> dict[str, Any]:
    from projects.services import group_create, project_create

    group = group_create(path="faults")
    return {
        key: project_create(group=group, path=f"scenario-{key}", service_desk_enabled=True)
        for key in keys
    }


def open_seed_issues(
    services: Services, projects: dict[str, Any], addresses: dict[str, str], count: int
) -> dict[str, list[Seed]] | None:
    """Issues for the replies to answer, opened (and thanked) through the real pipeline."""
    from issues.models import Issue, OutboundEmail
    from mailroom.models import InboundMessage
    from mailroom.tasks import poll_mailbox

    mails = {
        key: [new_issue_mail(f"seed-{key}-{j:03d}", 0, addresses[key], False) for j in range(count)]
        for key in projects
    }
    every = [m for ms in mails.values() for m in ms]
    poll_mailbox.delay("incoming_email")  # beat's first poll would come 5 s from now
    with services.dovecot.imap("support") as client:
        client.multiappend("INBOX", [m.raw for m in every])
    if not wait_for(
        lambda: (
            InboundMessage.objects.filter(status="done").count() == len(every)
            and OutboundEmail.objects.filter(status="sent").count() == len(every)
        ),
        120,
    ):
        return None
    seeds: dict[str, list[Seed]] = {}
    for key, project_mails in mails.items():
        seeds[key] = []
        for mail in project_mails:
            issue = Issue.objects.get(project=projects[key], title=mail.token + " plain")
            thanks = OutboundEmail.objects.get(issue=issue, kind="thank_you")
            seeds[key].append(Seed(issue.pk, f"{mail.token}@customers.example", mail.message_id,
                                   thanks.message_id, thanks.headers["Reply-To"]))  # fmt: skip
    return seeds


def set_up(args: argparse.Namespace, rng: random.Random, services: Services) -> Run | None:
    from django.conf import settings

    projects = create_projects(args.scenarios)
    mailbox = settings.SERVICEDESK_MAILBOXES["incoming_email"]
    addresses = {k: mailbox.address_for(p.service_desk.default_key) for k, p in projects.items()}
    seeds = open_seed_issues(services, projects, addresses, max(4, args.messages // 25))
    if seeds is None:
        print("set-up: the seed issues were not all created and thanked within 120 s; "
              f"see {services.celery_dir}", file=sys.stderr)  # fmt: skip
        return None
    graph_mailbox = settings.SERVICEDESK_MAILBOXES["service_desk_email"]
    graph_addresses = {
        k: graph_mailbox.address_for(p.service_desk.default_key) for k, p in projects.items()
    }
    return Run(args, rng, services, projects, addresses, seeds, Ledger(),
               Arrivals(services.smtp), graph_addresses)  # fmt: skip


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


# --- Main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=500, help="messages per scenario")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 moments in scenario a")
    parser.add_argument("--outage", type=float, default=60, help="SMTP outage in scenario d (s)")
    parser.add_argument("--timeout", type=float, default=300, help="longest wait for quiet (s)")
    parser.add_argument("--scenarios", default="".join(SCENARIOS),
                        help="which scenarios, e.g. 'ace'")  # fmt: skip
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
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    return args


def main() -> int:
    args = parse_args()
    for name in list(os.environ):
        if name.startswith(SCRUBBED_PREFIXES):
            del os.environ[name]
    t_begin = time.time()
    base = Path(tempfile.mkdtemp(prefix="servicedesk-faults-"))
    base.chmod(0o755)
    services: Services | None = None
    try:
        try:
            services = start_servers(base)
            services.env = worker_env(services)
            start_django(services.env)
            start_workers(services, args.concurrency)
        except (ServiceUnavailable, OSError, TimeoutError) as exc:
            print(f"service unavailable: {exc}", file=sys.stderr)
            return 3
        print(f"services up in {time.time() - t_begin:.1f} s (seed {args.seed}); "
              f"logs in {services.celery_dir}")  # fmt: skip
        run = set_up(args, random.Random(args.seed), services)
        if run is None:
            return 1
        print(f"set-up done at {time.time() - t_begin:.1f} s")
        runs = [run_scenario(run, SCENARIOS[key]) for key in args.scenarios]
        # Late copies (a resend after a sweep) still count: judge every scenario at the end.
        time.sleep(1)
        results = [judge(run, sc) for sc in runs]
        return report(run, results, round(time.time() - t_begin, 1))
    finally:
        if services is not None:
            services.stop()
        if args.keep:
            print(f"services' files (logs) kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def unknown_message_ids(arrivals: Arrivals) -> list[str]:
    """Message-IDs the SMTP server received that the outbox never wrote."""
    from issues.models import OutboundEmail

    arrivals.update()
    known = set(OutboundEmail.objects.values_list("message_id", flat=True))
    return sorted(m for m in arrivals.times if m not in known)


def report(run: Run, results: list[dict[str, Any]], total: float) -> int:
    """Print the table and the problems, write the JSON; the exit status."""
    args, env = run.args, run.services.env
    unknown = unknown_message_ids(run.arrivals)
    ok = all(r["ok"] for r in results) and not unknown
    report = {
        "ok": ok,
        "seed": args.seed,
        "short": args.short,
        "messages_per_scenario": args.messages,
        "kills": args.kills,
        "smtp_outage_s": args.outage,
        "processing_concurrency": args.concurrency,
        "beat": "real celery beat process (project schedule)",
        "worker_env": {k: v for k, v in env.items()
                       if k.startswith("SERVICEDESK_I") or k.endswith("STUCK_AFTER")},
        "unknown_message_ids_at_smtp": unknown,
        "total_seconds": total,
        "cpu_count": os.cpu_count(),
        "scenarios": results,
        "events": EVENTS,
    }  # fmt: skip
    print_table(results, args, total)
    for r in results:
        for problem in r["problems"][:30]:
            print(f"  {r['scenario']}) {problem}")
    if unknown:
        print(f"  emails at the SMTP server that the outbox never wrote: {unknown[:10]}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{'OK' if ok else 'FAILED'}: written to {output}")
    return 0 if ok else 1


COLUMNS: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
    ("scenario", lambda r: f"{r['scenario']}) {r['title']}"),
    ("messages", lambda r: r["messages"]),
    ("ledger rows", lambda r: r["ledger_rows"]),
    ("outcomes ok", lambda r: r["outcomes_ok"]),
    ("dup (in)", lambda r: r["duplicates_inbound"]),
    ("emails due", lambda r: r["emails_due"]),
    ("sent once", lambda r: r["sent_once"]),
    ("dup (out)", lambda r: r["duplicates_outbound"]),
    ("dup after kill (at-least-once)", lambda r: r["duplicates_after_kill_at_least_once"]),
    ("failed as injected", lambda r: r["failed_as_injected"]),
    ("failed wrongly", lambda r: r["failed_wrongly"]),
    ("missing", lambda r: r["missing"]),
    ("time", lambda r: f"{r['seconds']} s" + (" (timeout)" if r["timed_out"] else "")),
]


def print_table(results: list[dict[str, Any]], args: argparse.Namespace, total: float) -> None:
    cells = [[str(get(r)) for _, get in COLUMNS] for r in results]
    widths = [max([len(name)] + [len(row[i]) for row in cells])
              for i, (name, _) in enumerate(COLUMNS)]  # fmt: skip
    print(f"\nFault injection ({args.messages} messages per scenario, {args.kills} kills, "
          f"{args.outage:g} s SMTP outage, seed {args.seed}; total {total} s)")  # fmt: skip
    for row in [[name for name, _ in COLUMNS], *cells]:
        aligned = (
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print("  " + "  ".join(aligned))


if __name__ == "__main__":
    sys.exit(main())
