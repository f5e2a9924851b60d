"""IMAP end to end: Dovecot, the real worker processes, PostgreSQL and Redis."""

from __future__ import annotations

import time
from email.utils import make_msgid

import pytest
import redis
from celery import Celery

from issues.models import Issue, IssueEmail
from mailroom.models import InboundMessage, MailboxState
from servicedesk.config import load_mailboxes

from .helpers import make_email

pytestmark = pytest.mark.django_db(transaction=True)
Status = InboundMessage.Status


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    from django.db.models import Count

    ledger = list(
        InboundMessage.objects.values("status", "outcome", "reason", "last_error")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = (InboundMessage.objects.count(), Issue.objects.count())
    pytest.fail(f"timed out after {timeout}s waiting for {what}; ledger/issues {counts}: {ledger}")


# The IMAP tests' workers get a broker of their own (Redis database 2): a session-wide worker
# with another mailbox configuration must never take their tasks.
BROKER_DB = 2


def broker_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    return redis_server.url.rsplit("/", 1)[0] + f"/{BROKER_DB}"


def send(env: dict[str, str], task: str, *args: object, queue: str = "celery") -> None:
    """Send a task to the IMAP tests' workers (through their broker), as beat would."""
    # Not the current app: shared tasks sent later in this process must keep our broker.
    app = Celery("imap-tests", broker=env["REDIS_URL"], set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    app.send_task(task, args=list(args), queue=queue)


@pytest.fixture
def mailbox_env(imap_mailbox, redis_server, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Worker environment for the Dovecot test account; the test process gets the same config."""
    env = {
        "REDIS_URL": broker_url(redis_server),
        "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
        "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
        "SERVICEDESK_INCOMING_EMAIL_HOST": "127.0.0.1",
        "SERVICEDESK_INCOMING_EMAIL_PORT": str(imap_mailbox.port_imap),
        "SERVICEDESK_INCOMING_EMAIL_USER": "support",
        "SERVICEDESK_INCOMING_EMAIL_PASSWORD": imap_mailbox.password,
        "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "2",
        "SERVICEDESK_IMAP_LOCK_TTL": "6",
        "SERVICEDESK_IMAP_LEASE": "120",
        "SERVICEDESK_INBOUND_STUCK_AFTER": "3",
        # The task time limits follow STUCK_AFTER by default: keep them a production size.
        "CELERY_TASK_TIME_LIMIT": "120",
        "CELERY_TASK_SOFT_TIME_LIMIT": "90",
        # One sender, many mails: the rate limit has its own test (test_pipeline.py).
        "SERVICEDESK_NEW_ISSUES_PER_MINUTE": "0",
    }
    settings.SERVICEDESK_MAILBOXES = load_mailboxes(None, environ=env)
    settings.SERVICEDESK_INBOUND_STUCK_AFTER = 3
    # Queues and a poller lock left by an earlier test (its workers were killed) go.
    redis.Redis.from_url(broker_url(redis_server)).flushdb()
    return env


@pytest.fixture
def address(project, settings, mailbox_env) -> str:  # type: ignore[no-untyped-def]
    return settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
        project.service_desk.default_key
    )


def append(dovecot, messages: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    with dovecot.imap("support") as client:
        for raw in messages:
            client.append("INBOX", raw)


def undeleted(dovecot) -> list[int]:  # type: ignore[no-untyped-def]
    with dovecot.imap("support") as client:
        client.select_folder("INBOX")
        return client.search(["UNDELETED"])


def start_poller(worker_factory, env, name: str = "imap"):  # type: ignore[no-untyped-def]
    worker = worker_factory(name=name, env=env, queues="celery,outbound,mailbox", concurrency=3)
    poll(env)
    return worker


def poll(env: dict[str, str]) -> None:
    send(env, "mailroom.tasks.poll_mailbox", "incoming_email", queue="mailbox")


def test_appended_messages_become_issues_through_the_worker(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    messages = [make_email(to=address, subject=f"Ticket {i}") for i in range(25)]
    append(imap_mailbox, messages)
    start_poller(worker_factory, mailbox_env)
    wait_for(lambda: Issue.objects.count() == 25, 60, "25 issues")
    assert set(Issue.objects.values_list("title", flat=True)) == {f"Ticket {i}" for i in range(25)}
    rows = InboundMessage.objects.all()
    assert {(r.transport, r.mailbox, r.status) for r in rows} == {
        ("imap", "incoming_email", Status.DONE)
    }
    # Flagged \Deleted only after the ledger had them.
    wait_for(lambda: undeleted(imap_mailbox) == [], 10, "messages flagged deleted")
    state = MailboxState.objects.get(name="incoming_email")
    assert state.consecutive_errors == 0
    assert state.last_success_at is not None


def test_idle_push_turns_one_message_into_an_issue(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    # Fallback SEARCHes only every 60 s: an issue within 15 s can only come from IDLE's push.
    push_only = {
        **mailbox_env,
        "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "60",
        "SERVICEDESK_IMAP_RECHECK": "60",
        "SERVICEDESK_IMAP_LOCK_TTL": "90",
    }
    start_poller(worker_factory, push_only)
    wait_for(
        lambda: MailboxState.objects.filter(last_success_at__isnull=False).exists(),
        30,
        "the poller's first fetch",
    )
    time.sleep(0.5)  # let it enter IDLE
    started = time.monotonic()
    append(imap_mailbox, [make_email(to=address, subject="Pushed")])
    wait_for(lambda: Issue.objects.filter(title="Pushed").exists(), 15, "the pushed issue", 0.02)
    # Informational; the latency target is measured by bench/ingest.py, not asserted here.
    print(f"\nIMAP IDLE: APPEND to committed issue in {time.monotonic() - started:.2f} s")


def test_lmtp_delivery_is_routed_by_delivered_to(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    raw = make_email(to="Support team <team@example.test>", subject="Via the MTA")
    imap_mailbox.deliver_lmtp(raw, address)
    start_poller(worker_factory, mailbox_env)
    issue = wait_for(lambda: Issue.objects.filter(title="Via the MTA").first(), 30, "the issue")
    row = InboundMessage.objects.get(issue=issue)
    assert row.decision["header"] == "Delivered-To"


def test_same_message_delivered_twice_makes_one_issue(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    raw = make_email(to=address, subject="Twice", message_id=make_msgid(domain="c.example"))
    append(imap_mailbox, [raw, raw])
    start_poller(worker_factory, mailbox_env)
    wait_for(
        lambda: InboundMessage.objects.filter(status=Status.DONE).count() == 2, 30, "2 outcomes"
    )
    assert Issue.objects.count() == 1
    assert sorted(InboundMessage.objects.values_list("outcome", flat=True)) == [
        "ignored",
        "issue_created",
    ]


def test_poison_message_does_not_block_the_ones_behind_it(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    poison = (
        f"From: x@customer.example\r\nTo: {address}\r\nSubject: \xff\xfe broken\r\n"
        'Content-Type: multipart/mixed; boundary="never-closed"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n--never-closed\r\n"
        "Content-Type: text/plain; charset=unknown-8bit\r\n\r\n"
    ).encode("latin-1") + b"\x80\x81\xfe caf\xe9 \\ C:\\path ==&&**%%" * 50
    good = [make_email(to=address, subject=f"Good {i}") for i in range(5)]
    append(imap_mailbox, [poison, *good])
    start_poller(worker_factory, mailbox_env)
    wait_for(
        lambda: InboundMessage.objects.filter(status__in=["done", "failed"]).count() == 6,
        60,
        "6 recorded outcomes",
    )
    assert Issue.objects.filter(title__startswith="Good").count() == 5
    assert not InboundMessage.objects.filter(outcome="").exists()


@pytest.mark.timeout(240)
def test_worker_killed_mid_ingest_loses_nothing_and_duplicates_nothing(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    total = 240
    ids = [make_msgid(domain="crash.example") for _ in range(total)]
    append(imap_mailbox, [make_email(to=address, subject=f"Crash {i}", message_id=m)
                          for i, m in enumerate(ids)])  # fmt: skip
    first = start_poller(worker_factory, mailbox_env, name="doomed")
    wait_for(lambda: Issue.objects.count() >= 40, 60, "ingest under way", 0.01)
    first.kill()  # SIGKILL to the whole worker: main process and pool children
    done_at_kill = Issue.objects.count()
    assert done_at_kill < total, "the kill came too late to test anything"

    start_poller(worker_factory, mailbox_env, name="survivor")

    def finished() -> bool:
        send(mailbox_env, "mailroom.tasks.sweep_inbound")  # what beat runs every 30 s
        poll(mailbox_env)  # until the dead poller's lock has expired
        return (
            InboundMessage.objects.count() == total
            and not InboundMessage.objects.exclude(status=Status.DONE).exists()
        )

    wait_for(finished, 180, f"all {total} messages processed", interval=1.0)
    print(f"\nkilled with {done_at_kill}/{total} issues created; all {total} done after restart")
    assert Issue.objects.count() == total
    recorded = list(IssueEmail.objects.filter(direction="in").values_list("message_id", flat=True))
    assert sorted(recorded) == sorted(ids)
    assert set(InboundMessage.objects.values_list("outcome", flat=True)) == {"issue_created"}
    wait_for(lambda: undeleted(imap_mailbox) == [], 20, "every message flagged deleted")


def test_poller_reconnects_after_the_imap_server_restarts(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    start_poller(worker_factory, mailbox_env)
    append(imap_mailbox, [make_email(to=address, subject="Before restart")])
    wait_for(lambda: Issue.objects.filter(title="Before restart").exists(), 30, "first issue")
    imap_mailbox.restart()  # the poller's connection drops mid-IDLE
    append(imap_mailbox, [make_email(to=address, subject="After restart")])
    wait_for(lambda: Issue.objects.filter(title="After restart").exists(), 60, "reconnection")
    state = MailboxState.objects.get(name="incoming_email")
    assert state.consecutive_errors == 0  # reset by the first successful fetch after it


def _backlog_corpus(address: str, total: int, seed: int) -> tuple[list[bytes], set[str]]:
    """New emails and replies (about a third), in the order a mailbox would hold them.

    A reply names an earlier email of the corpus by In-Reply-To/References — the original, or
    another reply of its thread — as mail clients do. Returns the emails and the Message-IDs of
    the replies.
    """
    import random

    rng = random.Random(seed)
    threads: list[list[str]] = []  # Message-IDs of each thread, oldest first
    emails: list[bytes] = []
    replies: set[str] = set()
    for n in range(total):
        message_id = make_msgid(domain="backlog.example")
        if threads and rng.random() < 0.35:
            thread = rng.choice(threads[-60:])  # replies come soon after what they answer
            parent = rng.choice(thread)
            headers = {"In-Reply-To": parent, "References": " ".join([thread[0], parent])}
            subject = f"Re: backlog {n}"
            thread.append(message_id)
            replies.add(message_id)
        else:
            headers, subject = {}, f"backlog {n}"
            threads.append([message_id])
        emails.append(make_email(to=address, subject=subject, message_id=message_id,
                                 sender=f"Customer {n % 40} <c{n % 40}@backlog.example>",
                                 body=f"Email number {n}.", headers=headers))  # fmt: skip
    return emails, replies


@pytest.mark.timeout(300)
def test_backlog_replies_thread_whatever_order_workers_claim_them(
    imap_mailbox, worker_factory, mailbox_env, address
) -> None:
    """A backlog fetched at once is processed by several processes at the same time: a reply
    whose original is still in the ledger waits for it, it never opens an issue of its own."""
    emails, replies = _backlog_corpus(address, 1000, seed=10)
    assert len(replies) >= 250
    append(imap_mailbox, emails)
    start_poller(worker_factory, {**mailbox_env, "SERVICEDESK_NEW_ISSUES_PER_MINUTE": "0"})
    wait_for(
        lambda: InboundMessage.objects.filter(status=Status.DONE).count() == len(emails),
        240,
        f"all {len(emails)} emails processed",
        interval=0.5,
    )
    as_issues = InboundMessage.objects.filter(outcome="issue_created", message_id__in=replies)
    assert as_issues.count() == 0, f"{as_issues.count()} replies became issues"
    assert Issue.objects.count() == len(emails) - len(replies)
    assert InboundMessage.objects.filter(outcome="note_added").count() == len(replies)
