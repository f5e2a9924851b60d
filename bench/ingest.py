"""Inbound mail benchmark: Dovecot → IMAP poller → ledger → real Celery workers → PostgreSQL.

    make bench                      # or: .venv/bin/python bench/ingest.py --messages 2000

Starts its own throwaway PostgreSQL, Redis and Dovecot (tests/harness/services.py), migrates,
creates a project, starts the production worker layout (a poller worker on the "mailbox" queue,
a prefork processing worker on the default queue) and measures:

1. throughput: N mixed messages (plain, HTML, HTML-only, attachments, non-ASCII, replies)
   APPENDed as fast as possible; emails/s from the first APPEND to the last committed outcome;
2. latency: a trickle of 10 messages/s under IDLE; APPEND → committed outcome, p50/p95;
3. CPU seconds per email of each kind of process (user + system, from /proc, reaped children
   included: PostgreSQL's backends are counted when they exit), from the first APPEND until the
   burst's outbox is empty: the poller worker, the processing worker, PostgreSQL, Redis (the
   "all-in" figure), and Dovecot beside it (the IMAP server, not ours);
4. thank-you lag: each new issue's created_at → its thank-you email's sent_at, p50/p95/max;
5. peak RSS of the worker processes.

Prints a table and writes bench/results/ingest.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.services import (  # noqa: E402
    CeleryWorker,
    DovecotServer,
    PostgresServer,
    RedisServer,
    SmtpServer,
)

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


BODY_STYLES = ["plain", "html", "html-only", "attachment", "ünïcødé"]


def set_body(msg: EmailMessage, style: int, text: str, label: str) -> None:
    """The body of one of the kinds of mail a Service Desk receives (BODY_STYLES[style]):
    plain text, text + HTML, HTML only, text with two attachments, non-ASCII text."""
    if style == 0:
        msg.set_content(text)
    elif style == 1:
        msg.set_content(text)
        msg.add_alternative(f"<p>{text.replace(chr(10), '<br>')}</p>", subtype="html")
    elif style == 2:
        msg.set_content(
            f"<h1>{label}</h1><p>It <b>crashes</b> — see <a href='https://x.example'>log</a>"
            f"</p><ul><li>one</li><li>two</li></ul><blockquote>quoted</blockquote>",
            subtype="html",
        )
    elif style == 3:
        msg.set_content(text)
        msg.add_attachment(PNG, maintype="image", subtype="png", filename="screen.png")
        msg.add_attachment(b"log line\n" * 200, maintype="text", subtype="plain",
                           filename="game.log")  # fmt: skip
    else:
        msg.set_content(f"Привет! 日本語のテキスト, ça marche pas, {label}\n" * 5)


def mixed_messages(address: str, count: int, tag: str) -> list[tuple[str, bytes]]:
    """(subject, raw) pairs cycling through the kinds of mail a Service Desk receives."""
    messages: list[tuple[str, bytes]] = []
    sent_ids: list[str] = []
    for i in range(count):
        kind = i % 6
        msg = EmailMessage()
        msg["From"] = f"Customer {i} <customer{i}@bench.example>"
        msg["To"] = address
        subject = (
            f"{tag} {i} " + ["plain", "html", "html-only", "attachment", "ünïcødé", "reply"][kind]
        )
        msg["Subject"] = subject
        message_id = make_msgid(domain="bench.example")
        msg["Message-ID"] = message_id
        body = f"Hello team,\n\nticket {i}: the game crashes on level {i % 40}.\n\nThanks\n" * 3
        if kind < 5:
            set_body(msg, kind, body, f"ticket {i}")
        else:
            msg["In-Reply-To"] = sent_ids[-3] if len(sent_ids) >= 3 else make_msgid()
            msg.set_content(f"Any news?\n\nOn Monday you wrote:\n> {body}")
        sent_ids.append(message_id)
        messages.append((subject, msg.as_bytes()))
    return messages


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                children.append(int(entry.name))
    return [pid, *children]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process tree: the live processes, plus the children its members
    have reaped (a PostgreSQL backend that exited is in the postmaster's cutime/cstime)."""
    ticks = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime (fields 14-17 of proc(5); here offset by the two before)
        ticks += sum(int(value) for value in fields[11:15])
        pending.extend(child for child in process_tree(pid)[1:])
    return ticks / CLOCK_TICKS


class CpuMeter:
    """CPU seconds per kind of process between two snapshots."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots

    def snapshot(self) -> dict[str, float]:
        return {kind: cpu_seconds(pid) for kind, pid in self.roots.items()}


def wait_until_done(stored: int) -> None:
    """Until ``stored`` emails are in the ledger and none is queued or being processed. Polled
    every 50 ms with queries that read an index, not the ledger (its rows hold the raw emails):
    the benchmark's own queries are counted in PostgreSQL's CPU."""
    from django.db.models import Max

    from mailroom.models import InboundMessage

    waiting = InboundMessage.objects.filter(status__in=["queued", "processing"])
    while (
        InboundMessage.objects.aggregate(last=Max("pk"))["last"] or 0
    ) < stored or waiting.exists():
        time.sleep(0.05)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))] if ordered else float("nan")


class RssSampler(threading.Thread):
    def __init__(self, workers: list[CeleryWorker]) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.peak_process_kb = 0
        self.peak_total_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            total = 0
            for worker in self.workers:
                if worker.proc is None:
                    continue
                for pid in process_tree(worker.proc.pid):
                    kb = rss_kb(pid)
                    total += kb
                    self.peak_process_kb = max(self.peak_process_kb, kb)
            self.peak_total_kb = max(self.peak_total_kb, total)


def team_watching(project: object, count: int) -> None:
    """``count`` Reporters who watch the project: every new ticket and reply emails each."""
    from notifications.services import notification_level_set
    from projects.models import Role
    from projects.services import membership_set
    from tests.factories import UserFactory

    for n in range(count):
        user = UserFactory(username=f"watcher{n}")
        membership_set(user=user, project=project, role=Role.REPORTER)  # type: ignore[arg-type]
        notification_level_set(user=user, level="watch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--trickle", type=int, default=100, help="messages at 10/s")
    parser.add_argument("--concurrency", type=int, default=2, help="processing processes")
    parser.add_argument(
        "--watchers", type=int, default=0,
        help="team members watching the project: each new ticket notifies every one of them",
    )  # fmt: skip
    parser.add_argument("--output", default="")
    args = parser.parse_args()
    name = "ingest.json" if not args.watchers else f"ingest-{args.watchers}-watchers.json"
    args.output = args.output or str(ROOT / "bench" / "results" / name)

    base = Path(tempfile.mkdtemp(prefix="servicedesk-bench-"))
    base.chmod(0o755)
    started: list[object] = []
    try:
        pg = PostgresServer(base / "postgres").start()
        started.append(pg)
        redis = RedisServer(base / "redis").start()
        started.append(redis)
        dovecot = DovecotServer(base / "dovecot").start()
        started.append(dovecot)
        smtp = SmtpServer().start()  # the thank-you emails go somewhere real
        started.append(smtp)
        env = {
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
            "SERVICEDESK_VAR_DIR": str(base / "var"),
            "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
            "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
            "SERVICEDESK_INCOMING_EMAIL_HOST": "127.0.0.1",
            "SERVICEDESK_INCOMING_EMAIL_PORT": str(dovecot.port_imap),
            "SERVICEDESK_INCOMING_EMAIL_USER": "support",
            "SERVICEDESK_INCOMING_EMAIL_PASSWORD": dovecot.password,
            "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "30",
            "SERVICEDESK_IMAP_LEASE": "3600",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
            "LOG_LEVEL": "WARNING",
            # Production behaviour: DEBUG would record every query in memory.
            "DEBUG": "0",
        }
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db.models import Count

        from issues.models import OutboundEmail
        from mailroom.models import InboundMessage
        from mailroom.tasks import poll_mailbox
        from notifications.models import Event
        from projects.services import group_create, project_create

        call_command("migrate", verbosity=0)
        project = project_create(
            group=group_create(path="bench"), path="game", service_desk_enabled=True
        )
        address = settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
            project.service_desk.default_key
        )
        team_watching(project, args.watchers)
        poller = CeleryWorker(base / "celery", env, name="poller", concurrency=1,
                              queues="mailbox").start()  # fmt: skip
        started.append(poller)
        # Inbound processing and outbound sending, as the production "worker" service.
        processor = CeleryWorker(
            base / "celery", env, name="processor", concurrency=args.concurrency,
            queues="celery,outbound",
        ).start()  # fmt: skip
        started.append(processor)
        sampler = RssSampler([poller, processor])
        sampler.start()
        poll_mailbox.delay("incoming_email")
        time.sleep(2)  # the poller connects, finds the mailbox empty and IDLEs

        meter = CpuMeter({
            "poller worker": poller.proc.pid,  # type: ignore[union-attr]
            "processing worker": processor.proc.pid,  # type: ignore[union-attr]
            "PostgreSQL": pg.proc.pid,  # type: ignore[union-attr]
            "Redis": redis.proc.pid,  # type: ignore[union-attr]
            "Dovecot (IMAP server)": dovecot.proc.pid,  # type: ignore[union-attr]
        })  # fmt: skip

        # 1. Throughput.
        messages = mixed_messages(address, args.messages, "burst")
        cpu_before = meter.snapshot()
        t0 = time.time()
        with dovecot.imap("support") as client:
            # MULTIAPPEND (RFC 3502): one command per 100 messages, as a busy MTA would deliver.
            for start in range(0, len(messages), 100):
                client.multiappend("INBOX", [raw for _, raw in messages[start : start + 100]])
        appended = time.time()
        done = InboundMessage.objects.exclude(status__in=["queued", "processing"])
        done_at_appended = done.count()
        wait_until_done(args.messages)
        finished = time.time()
        drain_rate = (args.messages - done_at_appended) / max(finished - appended, 1e-6)
        outcomes = dict(
            InboundMessage.objects.values_list("outcome").annotate(n=Count("id")).order_by()
        )
        throughput = args.messages / (finished - t0)
        # What the burst caused (thank-yous, the team's notifications) is delivered and sent
        # after it: how long after the last inbound outcome the outbox is empty.
        unsent = OutboundEmail.objects.exclude(status__in=["sent", "failed"])
        while Event.objects.filter(delivered_at=None).exists() or unsent.exists():
            time.sleep(0.1)
        drained = time.time()
        cpu_after = meter.snapshot()
        team_after_burst = OutboundEmail.objects.filter(kind="team").count()
        cpu_ms = {
            kind: round((cpu_after[kind] - cpu_before[kind]) * 1000 / args.messages, 2)
            for kind in cpu_before
        }
        all_in = ("poller worker", "processing worker", "PostgreSQL", "Redis")
        cpu_ms_all_in = round(sum(cpu_ms[kind] for kind in all_in), 2)
        # Thank-you lag: the issue's creation → its thank-you email sent.
        lags = [
            (sent_at - created_at).total_seconds()
            for sent_at, created_at in OutboundEmail.objects.filter(
                kind="thank_you", issue__isnull=False, sent_at__isnull=False
            ).values_list("sent_at", "issue__created_at")
        ]
        thank_yous_unsent = OutboundEmail.objects.filter(
            kind="thank_you", sent_at__isnull=True
        ).count()

        # 2. Latency under IDLE: a trickle of 10 messages/s.
        trickle = mixed_messages(address, args.trickle, "trickle")
        appended_at: dict[str, float] = {}
        with dovecot.imap("support") as client:
            for subject, raw in trickle:
                tick = time.time()
                client.append("INBOX", raw)
                appended_at[subject] = tick
                time.sleep(max(0.0, 0.1 - (time.time() - tick)))
        expected = args.messages + args.trickle
        wait_until_done(expected)
        latencies = sorted(
            row.processed_at.timestamp() - appended_at[row.subject]
            for row in InboundMessage.objects.filter(subject__startswith="trickle")
        )
        sampler.stop.set()
        sampler.join()

        result = {
            "messages": args.messages,
            "watchers": args.watchers,
            "team_notifications_after_burst": team_after_burst,
            "outbox_empty_after_burst_s": round(drained - finished, 2),
            "processing_concurrency": args.concurrency,
            "append_seconds": round(appended - t0, 2),
            "total_seconds": round(finished - t0, 2),
            "emails_per_second": round(throughput, 1),
            "done_when_append_finished": done_at_appended,
            "emails_per_second_after_append": round(drain_rate, 1),
            "outcomes": outcomes,
            "trickle_messages": args.trickle,
            "latency_p50_s": round(statistics.median(latencies), 3),
            "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "latency_max_s": round(latencies[-1], 3),
            "cpu_ms_per_email": cpu_ms,
            "cpu_ms_per_email_all_in": cpu_ms_all_in,
            "cpu_window_s": round(drained - t0, 2),
            "thank_yous_sent": len(lags),
            "thank_yous_unsent": thank_yous_unsent,
            "thank_you_lag_p50_s": round(percentile(lags, 0.5), 3),
            "thank_you_lag_p95_s": round(percentile(lags, 0.95), 3),
            "thank_you_lag_max_s": round(max(lags, default=float("nan")), 3),
            "peak_worker_process_rss_mb": round(sampler.peak_process_kb / 1024, 1),
            "peak_workers_total_rss_mb": round(sampler.peak_total_kb / 1024, 1),
            "cpu_count": os.cpu_count(),
        }
        rows = [
            ("emails/s (first APPEND → last outcome)", f"{result['emails_per_second']}"),
            ("  done when the APPENDs ended / rate after",
             f"{done_at_appended} / {result['emails_per_second_after_append']} per s"),
            (f"{args.messages} mixed messages", f"{result['total_seconds']} s "
             f"(APPEND alone {result['append_seconds']} s)"),
            ("outcomes", ", ".join(f"{k or '-'}: {v}" for k, v in sorted(outcomes.items()))),
            ("team notifications of the burst / all sent after the burst",
             f"{team_after_burst} / {result['outbox_empty_after_burst_s']} s"),
            ("CPU ms/email, all-in (workers + PostgreSQL + Redis)", f"{cpu_ms_all_in}"),
            *((f"  {kind}", f"{ms}") for kind, ms in cpu_ms.items()),
            ("thank-you lag p50 / p95 / max (issue created → sent)",
             f"{result['thank_you_lag_p50_s']} / {result['thank_you_lag_p95_s']} / "
             f"{result['thank_you_lag_max_s']} s ({len(lags)} sent, {thank_yous_unsent} not)"),
            ("latency p50 / p95 / max (10 msg/s, IDLE)",
             f"{result['latency_p50_s']} / {result['latency_p95_s']} / "
             f"{result['latency_max_s']} s"),
            ("peak RSS: one worker process / all", f"{result['peak_worker_process_rss_mb']} MB / "
             f"{result['peak_workers_total_rss_mb']} MB"),
        ]  # fmt: skip
        width = max(len(name) for name, _ in rows)
        print(f"\nInbound ingest benchmark, {args.watchers} watchers")
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten to {output}")
    finally:
        for service in reversed(started):
            service.stop()  # type: ignore[attr-defined]
        import shutil

        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
