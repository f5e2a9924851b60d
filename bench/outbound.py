"""Outbound mail benchmark: team comment → outbox row → real Celery worker → SMTP server.

    make bench                      # or: .venv/bin/python bench/outbound.py [--quick]

Starts its own throwaway PostgreSQL, Redis and SMTP server (tests/harness/services.py),
migrates, creates a project with Service Desk enabled and an email issue with N participants,
starts a real Celery worker on "celery,outbound" (the production "worker" service) with the
SMTP backend pointed at the SMTP server, and measures:

1. latency: team comments, each in its own transaction exactly as the web view ``note_add``
   does (``note_create`` + ``note_added`` in ``transaction.atomic``), 5 per second so that they
   do not queue; for each email, the commit (an ``on_commit`` callback registered after
   ``note_added``, so after the send task was queued) → the SMTP server accepted its DATA,
   matched by Message-ID; p50/p95/max, split into pickup (commit → the worker claimed the row)
   and sending (claim → arrival);
2. throughput: (a) one comment on an issue with many participants (one transaction, tasks of
   ``SEND_BATCH`` emails), (b) many comments back to back (one task per comment); emails/s from
   the (first) commit to the last arrival;
3. team notification latency: a teammate @mentioned in a comment on an issue without email
   participants, 5 per second: commit → the SMTP server has the teammate's notification;
4. peak RSS of the worker processes.

Prints a table and writes bench/results/outbound.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import RssSampler  # noqa: E402
from tests.harness.services import (  # noqa: E402
    LOCALHOST,
    CeleryWorker,
    PostgresServer,
    RedisServer,
    SmtpServer,
)

COMMENT = (
    "Hi,\n\nthanks for the report. We could reproduce the crash on **level {n}** and a fix is "
    "on its way:\n\n- the save file is fine\n- the patch ships with `1.4.{n}`\n\n"
    "See [the release notes](https://example.test/notes) for details.\n"
)


def pct(values: Sequence[float], q: float) -> float:
    """The same nearest-rank percentile as bench/ingest.py (values sorted)."""
    return values[int(q * (len(values) - 1))]


def summary(values: Sequence[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    return {
        "p50_s": round(statistics.median(values), 4),
        "p95_s": round(pct(values, 0.95), 4),
        "max_s": round(values[-1], 4),
    }


class Arrivals:
    """Message-ID → time the SMTP server accepted the message, read incrementally."""

    def __init__(self, smtp: SmtpServer) -> None:
        self.smtp = smtp
        self.seen = 0
        self.at: dict[str, float] = {}
        self.parser = BytesHeaderParser()

    def update(self) -> None:
        with self.smtp._lock:
            new = self.smtp.messages[self.seen :]
        for mail in new:
            message_id = str(self.parser.parsebytes(mail.data)["Message-ID"] or "").strip()
            self.at[message_id] = mail.received_at
        self.seen += len(new)

    def wait(self, message_ids: Sequence[str], timeout: float) -> list[str]:
        """Wait until every Message-ID arrived (or the timeout); return those missing."""
        deadline = time.monotonic() + timeout
        while True:
            self.update()
            missing = [m for m in message_ids if m not in self.at]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.02)


def smtp_connect_cost(port: int, rounds: int = 20) -> float:
    """Median seconds for connect + EHLO + QUIT against the SMTP server, from this process."""
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        with smtplib.SMTP(LOCALHOST, port, local_hostname="bench.example", timeout=10) as client:
            client.ehlo()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comments", type=int, default=100, help="latency comments, at --rate")
    parser.add_argument("--rate", type=float, default=5.0, help="latency comments per second")
    parser.add_argument(
        "--participants", type=int, default=3, help="latency issue's participants (emails/comment)"
    )
    parser.add_argument(
        "--fanout", type=int, default=500, help="burst (a): participants; one comment to all"
    )
    parser.add_argument(
        "--burst-comments", type=int, default=100, help="burst (b): comments, 5 emails each"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--timeout", type=float, default=120, help="longest wait per phase (s)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 20 comments, fan-out 100, burst 20"
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "outbound.json"))
    args = parser.parse_args()
    if args.quick:
        args.comments, args.fanout, args.burst_comments = 20, 100, 20
    burst_participants = 5

    base = Path(tempfile.mkdtemp(prefix="servicedesk-bench-"))
    base.chmod(0o755)
    started: list[object] = []
    try:
        pg = PostgresServer(base / "postgres").start()
        started.append(pg)
        redis = RedisServer(base / "redis").start()
        started.append(redis)
        smtp = SmtpServer().start()
        started.append(smtp)
        env = {
            "SERVICEDESK_ENV": "production",
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
            "SITE_URL": "https://servicedesk.example.test",
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            "SERVICEDESK_VAR_DIR": str(base / "var"),
            # An address-only incoming mailbox: emails carry Reply-To and a mailto unsubscribe
            # as in production; nothing polls it.
            "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
            "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
            "SERVICEDESK_INCOMING_EMAIL_INBOX_METHOD": "none",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": LOCALHOST,
            "EMAIL_PORT": str(smtp.port),
            "DEFAULT_FROM_EMAIL": "support@example.test",
            "LOG_LEVEL": "WARNING",
            "DEBUG": "0",
        }
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import transaction
        from django.db.models import Count

        from accounts.models import User
        from accounts.selectors import support_bot
        from issues.emails import SEND_BATCH, note_added
        from issues.models import EmailParticipant, Issue, OutboundEmail
        from issues.services import issue_create, note_create
        from projects.models import Role
        from projects.services import group_create, membership_set, project_create

        assert env["EMAIL_BACKEND"] == settings.EMAIL_BACKEND
        call_command("migrate", verbosity=0)
        project = project_create(
            group=group_create(path="bench"), path="game", service_desk_enabled=True
        )
        agent = User.objects.create_user(username="agent", email="agent@example.test")
        membership_set(user=agent, project=project, role=Role.OWNER)
        mate = User.objects.create_user(username="mate", email="mate@example.test")
        membership_set(user=mate, project=project, role=Role.REPORTER)
        bot = support_bot()

        def email_issue(title: str, participants: int) -> Issue:
            """An issue as the mailroom opens it, with ``participants`` email participants."""
            issue = issue_create(
                project=project, author=bot, title=title, confidential=True,
                description="The game crashes on level 3.",
                external_author="customer0@customer.example",
            )  # fmt: skip
            EmailParticipant.objects.bulk_create(
                EmailParticipant(issue=issue, email=f"customer{i}@customer.example")
                for i in range(participants)
            )
            return issue

        def comment(issue: Issue, n: int) -> tuple[list[OutboundEmail], dict[str, float]]:
            """One team comment, as issues/views.py note_add writes it, with timestamps."""
            marks: dict[str, float] = {"begin": time.time()}
            with transaction.atomic():
                # Registered first: runs first at commit, before note_added's enqueue callback.
                transaction.on_commit(lambda: marks.__setitem__("committed", time.time()))
                note = note_create(issue=issue, author=agent, body=COMMENT.format(n=n))
                emails = note_added(note)
                # Registered after note_added: the commit as the benchmark defines it (the send
                # tasks are already queued when it runs).
                transaction.on_commit(lambda: marks.__setitem__("commit", time.time()))
            return emails, marks

        latency_issue = email_issue("It crashes on level 3", args.participants)
        fanout_issue = email_issue("Crash reported by everybody", args.fanout)
        burst_issue = email_issue("Crash, again", burst_participants)

        worker = CeleryWorker(
            base / "celery", env, name="outbound", concurrency=args.concurrency,
            queues="celery,outbound",
        ).start()  # fmt: skip
        started.append(worker)
        sampler = RssSampler([worker])
        sampler.start()
        arrivals = Arrivals(smtp)
        connect_s = smtp_connect_cost(smtp.port)

        # Warm-up: every pool process imports, connects to PostgreSQL, resolves its FQDN once.
        warm: list[str] = []
        for n in range(2 * args.concurrency):
            emails, _ = comment(latency_issue, n)
            warm += [e.message_id for e in emails]
            time.sleep(0.3)
        warm_missing = arrivals.wait(warm, args.timeout)
        if warm_missing:
            raise SystemExit(f"warm-up: {len(warm_missing)} email(s) never arrived; see "
                             f"{worker.log_path}")  # fmt: skip

        # 1. Latency: comments spaced out so that they do not queue.
        interval = 1 / args.rate
        sent: list[tuple[OutboundEmail, dict[str, float]]] = []
        for n in range(args.comments):
            tick = time.monotonic()
            emails, marks = comment(latency_issue, n)
            sent += [(e, marks) for e in emails]
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
        latency_missing = arrivals.wait([e.message_id for e, _ in sent], args.timeout)
        rows = {
            row.pk: row
            for row in OutboundEmail.objects.filter(pk__in=[e.pk for e, _ in sent]).only(
                "pk", "message_id", "claimed_at", "sent_at", "claim_token", "attempts"
            )
        }
        latency, pickup, sending, enqueue, transaction_s = [], [], [], [], []
        first_in_task, next_in_task = [], []
        by_task: dict[Any, list[tuple[float, float]]] = defaultdict(list)
        for email, marks in sent:
            arrived = arrivals.at.get(email.message_id)
            if arrived is None:
                continue
            row = rows[email.pk]
            latency.append(arrived - marks["commit"])
            claimed = row.claimed_at.timestamp() if row.claimed_at else arrived
            pickup.append(claimed - marks["commit"])
            sending.append(arrived - claimed)
            by_task[row.claim_token].append((arrived, claimed))
        for marks in {id(m): m for _, m in sent}.values():
            enqueue.append(marks["commit"] - marks["committed"])
            transaction_s.append(marks["committed"] - marks["begin"])
        for times in by_task.values():
            times.sort()
            first_in_task.append(times[0][0] - times[0][1])
            next_in_task += [b[0] - a[0] for a, b in itertools.pairwise(times)]

        # 1b. Team notification latency: "@mate" in a comment on an issue nobody outside the
        # team takes part in: one notification email per comment, to mate.
        team_issue = issue_create(project=project, author=agent, title="Crash triage",
                                  description="Internal triage")  # fmt: skip
        team_commits: dict[int, float] = {}  # note id → commit time
        for n in range(args.comments):
            tick = time.monotonic()
            marks: dict[str, float] = {}
            with transaction.atomic():
                note = note_create(issue=team_issue, author=agent, body=f"@mate please look ({n})")
                transaction.on_commit(lambda m=marks: m.__setitem__("commit", time.time()))
            team_commits[note.pk] = marks["commit"]
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
        # The emails are written by the delivery task after each commit: find them by note.
        team_rows = OutboundEmail.objects.filter(kind="team", user=mate, note_id__in=team_commits)
        deadline = time.monotonic() + args.timeout
        while team_rows.count() < len(team_commits) and time.monotonic() < deadline:
            time.sleep(0.05)
        team_sent = [
            (m, team_commits[n]) for n, m in team_rows.values_list("note_id", "message_id")
        ]
        team_missing = arrivals.wait([m for m, _ in team_sent], args.timeout)
        team_missing += [""] * (len(team_commits) - len(team_sent))  # never written
        team_latency = [arrivals.at[m] - t for m, t in team_sent if m in arrivals.at]

        # 2a. Throughput, fan-out: one comment, args.fanout emails in tasks of SEND_BATCH.
        emails, marks = comment(fanout_issue, 0)
        fanout_ids = [e.message_id for e in emails]
        fanout_missing = arrivals.wait(fanout_ids, args.timeout)
        fanout_times = sorted(arrivals.at[m] for m in fanout_ids if m in arrivals.at)
        fanout_s = fanout_times[-1] - marks["commit"] if fanout_times else float("nan")
        fanout_first_s = fanout_times[0] - marks["commit"] if fanout_times else float("nan")
        fanout_transaction_s = marks["committed"] - marks["begin"]

        # 2b. Throughput, many comments back to back: one task per comment.
        burst_ids: list[str] = []
        first_commit = last_commit = 0.0
        for n in range(args.burst_comments):
            emails, marks = comment(burst_issue, n)
            first_commit = first_commit or marks["commit"]
            last_commit = marks["commit"]
            burst_ids += [e.message_id for e in emails]
        burst_missing = arrivals.wait(burst_ids, args.timeout)
        burst_times = sorted(arrivals.at[m] for m in burst_ids if m in arrivals.at)
        burst_s = burst_times[-1] - first_commit if burst_times else float("nan")
        after_last = [t for t in burst_times if t > last_commit]
        drain_s = burst_times[-1] - last_commit if burst_times else float("nan")

        sampler.stop.set()
        sampler.join()
        # The worker records "sent" just after the server's 250: let the last rows settle.
        unsettled = OutboundEmail.objects.filter(status__in=["pending", "sending"])
        deadline = time.monotonic() + 10
        while unsettled.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        statuses = dict(
            OutboundEmail.objects.values_list("status").annotate(n=Count("id")).order_by()
        )

        lat = summary(latency)
        result = {
            "worker_concurrency": args.concurrency,
            "send_batch": SEND_BATCH,
            "latency_comments": args.comments,
            "latency_rate_per_s": args.rate,
            "latency_participants": args.participants,
            "latency_emails": len(latency),
            "latency_missing": len(latency_missing),
            "latency_p50_s": lat.get("p50_s"),
            "latency_p95_s": lat.get("p95_s"),
            "latency_max_s": lat.get("max_s"),
            "team_notifications": len(team_commits),
            "team_notifications_missing": len(team_missing),
            "team_notification_latency": summary(team_latency),
            "pickup_commit_to_claim": summary(pickup),
            "sending_claim_to_arrival": summary(sending),
            "sending_first_email_of_task": summary(first_in_task),
            "sending_next_email_same_task": summary(next_in_task),
            "enqueue_in_on_commit": summary(enqueue),
            "comment_transaction": summary(transaction_s),
            "smtp_connect_ehlo_quit_s": round(connect_s, 4),
            "fanout_emails": len(fanout_ids),
            "fanout_missing": len(fanout_missing),
            "fanout_transaction_s": round(fanout_transaction_s, 3),
            "fanout_first_arrival_s": round(fanout_first_s, 3),
            "fanout_seconds": round(fanout_s, 3),
            "fanout_emails_per_second": round(len(fanout_times) / fanout_s, 1),
            "burst_comments": args.burst_comments,
            "burst_emails": len(burst_ids),
            "burst_missing": len(burst_missing),
            "burst_create_seconds": round(last_commit - first_commit, 3),
            "burst_seconds": round(burst_s, 3),
            "burst_emails_per_second": round(len(burst_times) / burst_s, 1),
            "burst_emails_after_last_commit": len(after_last),
            "burst_drain_seconds_after_last_commit": round(drain_s, 3),
            "statuses": statuses,
            "peak_worker_process_rss_mb": round(sampler.peak_process_kb / 1024, 1),
            "peak_worker_total_rss_mb": round(sampler.peak_total_kb / 1024, 1),
            "cpu_count": os.cpu_count(),
        }

        def three(s: dict[str, float]) -> str:
            return f"{s.get('p50_s')} / {s.get('p95_s')} / {s.get('max_s')} s"

        table = [
            (f"latency p50 / p95 / max ({args.comments} comments at {args.rate:g}/s, "
             f"{args.participants} emails each)",
             f"{result['latency_p50_s']} / {result['latency_p95_s']} / "
             f"{result['latency_max_s']} s"),
            ("  pickup: commit → worker claimed", three(result["pickup_commit_to_claim"])),
            ("  sending: claimed → SMTP server has it", three(result["sending_claim_to_arrival"])),
            ("    first email of a task (claim, load, connect, send)",
             three(result["sending_first_email_of_task"])),
            ("    each next email of the same task",
             three(result["sending_next_email_same_task"])),
            ("  not included: enqueue in on_commit", three(result["enqueue_in_on_commit"])),
            ("  comment transaction (render + insert)", three(result["comment_transaction"])),
            ("  SMTP connect + EHLO + QUIT (from the bench)",
             f"{result['smtp_connect_ehlo_quit_s']} s"),
            (f"team notification: commit → SMTP p50 / p95 / max ({len(team_commits)} mentions)",
             three(result["team_notification_latency"])),
            (f"fan-out: 1 comment → {len(fanout_ids)} emails",
             f"{result['fanout_emails_per_second']} emails/s ({result['fanout_seconds']} s, "
             f"first after {result['fanout_first_arrival_s']} s)"),
            ("  its transaction (render + insert)", f"{result['fanout_transaction_s']} s"),
            (f"burst: {args.burst_comments} comments → {len(burst_ids)} emails",
             f"{result['burst_emails_per_second']} emails/s ({result['burst_seconds']} s; "
             f"first → last commit {result['burst_create_seconds']} s)"),
            ("  still to send at the last commit / sent in",
             f"{len(after_last)} / {result['burst_drain_seconds_after_last_commit']} s"),
            ("missing (latency / team / fan-out / burst)",
             f"{len(latency_missing)} / {len(team_missing)} / {len(fanout_missing)} / "
             f"{len(burst_missing)}"),
            ("outbox statuses", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
            ("peak RSS: one worker process / all",
             f"{result['peak_worker_process_rss_mb']} MB / "
             f"{result['peak_worker_total_rss_mb']} MB"),
        ]  # fmt: skip
        width = max(len(name) for name, _ in table)
        print(f"\nOutbound email benchmark ({args.concurrency} worker processes)")
        for name, value in table:
            print(f"  {name:<{width}}  {value}")
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten to {output}")
    finally:
        for service in reversed(started):
            service.stop()  # type: ignore[attr-defined]
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
