"""Where the worker's time goes per email: the mailroom's processing path under cProfile.

    .venv/bin/python bench/ingest_profile.py --messages 1000 [--top 40] [--sort tottime]

Starts a throwaway PostgreSQL and Redis (tests/harness/services.py), stores the same mixed
corpus as bench/ingest.py in the ledger (not profiled), then claims and processes it in task
batches (SERVICEDESK_INBOUND_TASK_BATCH) and sends the outbox, in this process, under cProfile
timed by this thread's CPU clock (waits on PostgreSQL, Redis and SMTP, and the SMTP server's
thread, are not counted). Prints wall and CPU ms per email, SQL queries per email and the
profile's top items.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import cpu_seconds, mixed_messages  # noqa: E402
from tests.harness.services import PostgresServer, RedisServer, SmtpServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--output", default="", help="write the pstats file here")
    parser.add_argument("--no-profile", action="store_true", help="time only")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="servicedesk-profile-"))
    base.chmod(0o755)
    started: list[object] = []
    try:
        pg = PostgresServer(base / "postgres").start()
        started.append(pg)
        redis = RedisServer(base / "redis").start()
        started.append(redis)
        smtp = SmtpServer().start()
        started.append(smtp)
        os.environ.update({
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnop",
            "SERVICEDESK_VAR_DIR": str(base / "var"),
            "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
            "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
            "SERVICEDESK_INCOMING_EMAIL_HOST": "127.0.0.1",  # never connected to here
            "SERVICEDESK_INCOMING_EMAIL_USER": "support",
            "SERVICEDESK_INCOMING_EMAIL_PASSWORD": "unused",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
            "LOG_LEVEL": "WARNING",
            "DEBUG": "0",
        })  # fmt: skip
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from issues.models import OutboundEmail
        from issues.outbox import outbound_claim, outbound_send
        from mailroom.ledger import (
            RawEmail,
            inbound_claim,
            inbound_process_batch,
            inbound_store_imap_batch,
        )
        from projects.services import group_create, project_create

        call_command("migrate", verbosity=0)
        project = project_create(
            group=group_create(path="bench"), path="game", service_desk_enabled=True
        )
        address = settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
            project.service_desk.default_key
        )
        messages = mixed_messages(address, args.messages, "profile")
        ids: list[int] = []
        store_pg0, store_cpu0 = cpu_seconds(pg.proc.pid), time.thread_time()  # type: ignore[union-attr]
        for start in range(0, len(messages), 100):
            ids += inbound_store_imap_batch(
                mailbox="incoming_email", uid_validity=1, enqueue=False,
                emails=[RawEmail(raw, uid=start + n + 1)
                        for n, (_, raw) in enumerate(messages[start : start + 100])],
            )  # fmt: skip
        store_pg = cpu_seconds(pg.proc.pid) - store_pg0  # type: ignore[union-attr]
        store_cpu = time.thread_time() - store_cpu0
        size = settings.SERVICEDESK_INBOUND_TASK_BATCH
        # CPU time of this thread: waits on PostgreSQL, Redis and SMTP (and the SMTP server
        # thread) are not the worker's CPU.
        profile = cProfile.Profile(time.thread_time)
        pg0 = cpu_seconds(pg.proc.pid)  # type: ignore[union-attr]
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            if not args.no_profile:
                profile.enable()
            for start in range(0, len(ids), size):
                claimed, token = inbound_claim(ids[start : start + size])
                inbound_process_batch(claimed, token)
            processed_cpu = time.thread_time()
            pending = list(
                OutboundEmail.objects.filter(status="pending").values_list("pk", flat=True)
            )
            for start in range(0, len(pending), 50):
                claimed, token = outbound_claim(pending[start : start + 50])
                outbound_send(claimed, token)
            profile.disable()
        cpu1, wall1 = time.thread_time(), time.perf_counter()
        pg1 = cpu_seconds(pg.proc.pid)  # type: ignore[union-attr]
        n = len(ids)
        print(f"{n} emails, batches of {size}: wall {(wall1 - wall0) * 1000 / n:.2f} ms/email, "
              f"CPU {(cpu1 - cpu0) * 1000 / n:.2f} ms/email "
              f"(processing {(processed_cpu - cpu0) * 1000 / n:.2f}, "
              f"sending {len(pending)} emails {(cpu1 - processed_cpu) * 1000 / n:.2f}), "
              f"{len(queries) / n:.2f} SQL queries/email; "
              f"PostgreSQL CPU {(pg1 - pg0) * 1000 / n:.2f} ms/email")  # fmt: skip
        print(f"storing them (as the IMAP poller does, 100 a batch): "
              f"CPU {store_cpu * 1000 / n:.2f} "
              f"ms/email, PostgreSQL CPU {store_pg * 1000 / n:.2f} ms/email")  # fmt: skip
        if not args.no_profile:
            stats = pstats.Stats(profile)
            if args.output:
                stats.dump_stats(args.output)
            stats.sort_stats(args.sort).print_stats(args.top)
    finally:
        for service in reversed(started):
            service.stop()  # type: ignore[attr-defined]
        import shutil

        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
