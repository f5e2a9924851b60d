"""Outbound email end to end: Dovecot, real Celery workers, the real SMTP server, no mocks.

The workers here get a Redis broker database of their own (as the IMAP tests' do), and for the
length of a test this process sends its tasks there too: the emails a team comment queues after
commit (as the web process does) reach our worker, never the session-wide one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid, parsedate_to_datetime
from typing import Any

import pytest
import redis
from celery import Celery, current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.selectors import support_bot
from issues.emails import issue_message_id, note_added
from issues.models import Issue, Note, OutboundEmail
from issues.outbox import outbound_sweep
from issues.services import note_create
from issues.tasks import send_outbound_emails, sweep_outbound
from mailroom.models import InboundMessage
from mailroom.tasks import poll_mailbox
from servicedesk.config import load_mailboxes
from tests.harness.services import CapturedMail, CeleryWorker, SmtpServer, wait_until
from tests.mailroom.helpers import deliver, make_email

pytestmark = pytest.mark.django_db(transaction=True)
Status = OutboundEmail.Status

# Redis database of these tests' broker (and poller lock); the IMAP tests use 2.
BROKER_DB = 3
CUSTOMER = "jake@customer.example"


def to_customers(smtp: SmtpServer) -> list[CapturedMail]:
    """What the SMTP server got for people outside the team (whose notifications, sent by the
    same worker, arrive beside them)."""
    return [m for m in smtp.messages if not m.recipients[0].endswith("@team.example")]


FROM_ADDRESS = "support@servicedesk.test"  # DEFAULT_FROM_EMAIL for SITE_URL=http://servicedesk.test
ADDRESS = "support+%{key}@example.test"  # delivered to Dovecot's "support" account (+ detail)


# --- helpers -----------------------------------------------------------------------------------


def state() -> str:
    """What the database holds, for a timeout's message."""
    inbound = list(InboundMessage.objects.values_list("status", "outcome", "reason", "last_error"))
    outbound = list(
        OutboundEmail.objects.exclude(kind="team").values_list(
            "kind", "status", "attempts", "last_error", "recipient"
        )
    )
    return f"issues: {Issue.objects.count()}; inbound: {inbound}; outbound: {outbound}"


def log_tail(worker: CeleryWorker | None, lines: int = 30) -> str:
    if worker is None or not worker.log_path.exists():
        return ""
    text = worker.log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\nworker log:\n" + "\n".join(text)


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, worker: CeleryWorker | None = None
) -> Any:
    """Poll until ``predicate`` returns something truthy; return it, or fail saying why."""
    found: list[Any] = []

    def check() -> bool:
        value = predicate()
        if value:
            found.append(value)
        return bool(value)

    try:
        wait_until(check, timeout, what, interval=0.1)
    except TimeoutError as exc:
        pytest.fail(f"{exc}; {state()}{log_tail(worker)}", pytrace=False)
    return found[-1]


def run_task(worker: CeleryWorker, task: Any, *args: Any, timeout: float = 30) -> str:
    """Send a task as beat would, wait until the worker has run it; return the logged result."""
    result = task.delay(*args)  # through the current app: our broker
    done = re.compile(
        rf"Task {re.escape(task.name)}\[{re.escape(result.id)}\] succeeded in [\d.]+s: (.*)"
    )

    def ran() -> str | None:
        match = done.search(worker.log_path.read_text(errors="replace"))
        return match[1] if match else None

    return str(wait_for(ran, timeout, f"{task.name} to run", worker))


def row(email: OutboundEmail) -> OutboundEmail:
    return OutboundEmail.objects.exclude(kind="team").get(pk=email.pk)


def reply_to(message: EmailMessage, text: str) -> tuple[str, bytes]:
    """The customer's answer, as a mail client writes it: threaded, with the original quoted."""
    original = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    sender = message["From"].addresses[0]
    sent_at = parsedate_to_datetime(message["Date"])
    quoted = "\n".join(f"> {line}" if line else ">" for line in original.rstrip().split("\n"))
    references = str(message.get("References", "")).split()
    if message["Message-ID"] not in references:
        references.append(message["Message-ID"])
    to = message["Reply-To"].addresses[0].addr_spec
    body = (
        f"{text}\n\nOn {sent_at:%a, %d %b %Y at %H:%M}, {sender.display_name or sender.addr_spec}"
        f" wrote:\n{quoted}\n"
    )
    raw = make_email(
        to=to,
        subject=f"Re: {message['Subject']}",
        body=body,
        message_id=make_msgid(domain="customer.example"),
        headers={"In-Reply-To": message["Message-ID"], "References": " ".join(references)},
    )
    return to, raw


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def broker_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    url = redis_server.url.rsplit("/", 1)[0] + f"/{BROKER_DB}"
    # Queues and a poller lock left by an earlier test (its workers are gone) go.
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def celery_app(broker_url: str) -> Iterator[Celery]:
    """This process's Celery app for the test: shared tasks sent here go to our broker."""
    previous = current_app._get_current_object()
    app = Celery("outbound-e2e", broker=broker_url, set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")  # queues, serializer
    app.set_current()
    yield app
    previous.set_current()
    app.close()


@pytest.fixture
def start_worker(worker_factory, smtp, celery_app, broker_url, settings):  # type: ignore[no-untyped-def]
    """Start a worker on our broker, consuming the queues production workers do, sending to the
    ``smtp`` fixture's server (worker_factory sets EMAIL_HOST/EMAIL_PORT); this process gets the
    same mailbox configuration (Reply-To addresses of the emails it records)."""

    def start(mailbox_env: dict[str, str]) -> CeleryWorker:
        env = {
            "REDIS_URL": broker_url,
            "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
            "SERVICEDESK_INCOMING_EMAIL_ADDRESS": ADDRESS,
            **mailbox_env,
        }
        settings.SERVICEDESK_MAILBOXES = load_mailboxes(None, environ=env)
        return worker_factory(
            name="outbound-e2e", env=env, queues="celery,outbound,mailbox", concurrency=3
        )

    return start


# --- tests -------------------------------------------------------------------------------------


def test_customer_email_thank_you_and_reply_round_trip(
    imap_mailbox, start_worker, smtp, project
) -> None:
    worker = start_worker(
        {
            "SERVICEDESK_INCOMING_EMAIL_HOST": "127.0.0.1",
            "SERVICEDESK_INCOMING_EMAIL_PORT": str(imap_mailbox.port_imap),
            "SERVICEDESK_INCOMING_EMAIL_USER": "support",
            "SERVICEDESK_INCOMING_EMAIL_PASSWORD": imap_mailbox.password,
            "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "2",
            "SERVICEDESK_IMAP_LOCK_TTL": "6",
            "SERVICEDESK_IMAP_LEASE": "120",
        }
    )
    poll_mailbox.delay("incoming_email")  # what beat does; routed to the "mailbox" queue
    address = settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
        project.service_desk.default_key
    )

    # 1. The customer writes; the MTA delivers to Dovecot; the poller and worker open an issue.
    first_id = make_msgid(domain="customer.example")
    imap_mailbox.deliver_lmtp(
        make_email(to=address, subject="Printer on fire", message_id=first_id), address
    )
    issue = wait_for(lambda: Issue.objects.filter(project=project).first(), 60, "the issue", worker)
    assert (issue.title, issue.external_author, issue.confidential) == (
        "Printer on fire",
        CUSTOMER,
        True,
    )

    # 2. The worker sends the thank-you through the outbox to the SMTP server.
    [captured] = wait_for(lambda: to_customers(smtp), 30, "the thank-you by SMTP", worker)
    [thank_you_row] = OutboundEmail.objects.exclude(kind="team").filter(issue=issue)
    assert thank_you_row.kind == OutboundEmail.Kind.THANK_YOU
    wait_for(lambda: row(thank_you_row).status == Status.SENT, 15, "thank-you sent", worker)
    assert (captured.envelope_from, captured.recipients) == (FROM_ADDRESS, [CUSTOMER])
    thank_you = captured.message
    key = thank_you_row.sent_notification.reply_key
    assert thank_you["To"].addresses[0].addr_spec == CUSTOMER
    assert thank_you["Subject"] == f"Re: Printer on fire (#{issue.iid})"
    assert thank_you["Message-ID"] == issue_message_id(issue) == thank_you_row.message_id
    assert thank_you["Reply-To"].addresses[0].addr_spec == f"support+{key}@example.test"
    assert f"ticket #{issue.iid} for it" in thank_you.get_body(("plain",)).get_content()

    # 3. The customer answers from their mail client, above a quote of the thank-you.
    recipient, reply = reply_to(thank_you, "Thanks, that fixed it.")
    imap_mailbox.deliver_lmtp(reply, recipient)
    note = wait_for(
        lambda: Note.objects.filter(issue=issue, external_author=CUSTOMER).first(),
        60,
        "the reply as a note",
        worker,
    )
    wait_for(
        lambda: InboundMessage.objects.filter(status=InboundMessage.Status.DONE).count() == 2,
        30,
        "both emails' outcomes",
        worker,
    )

    # 4. The reply is a note on the same issue, its quote trimmed out of the text.
    assert Issue.objects.count() == 1
    assert list(Note.objects.filter(issue=issue).values_list("pk", flat=True)) == [note.pk]
    assert (note.author, note.internal, note.system) == (support_bot(), False, False)
    assert sorted(InboundMessage.objects.values_list("outcome", "issue_id")) == [
        ("issue_created", issue.pk),
        ("note_added", issue.pk),
    ]
    # The quoted history is kept apart from the new text (collapsed, Reporter+ only), without
    # the unsubscribe link and keys of the thank-you it quotes.
    assert note.body == "Thanks, that fixed it."
    assert "> Thank you for your message." in note.quoted
    sent = thank_you_row.sent_notification
    assert "/-/unsubscribe/" not in note.quoted
    assert sent.unsubscribe_token not in note.quoted
    assert sent.reply_key not in note.quoted
    # The customer is the only participant: their own reply is not emailed back to them.
    assert OutboundEmail.objects.exclude(kind="team").count() == 1
    assert len(to_customers(smtp)) == 1


def test_smtp_outage_the_comment_is_retried_by_the_sweeper_and_arrives_once(
    start_worker, smtp, project, owner
) -> None:
    worker = start_worker({"SERVICEDESK_INCOMING_EMAIL_INBOX_METHOD": "none"})
    address = settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
        project.service_desk.default_key
    )
    # The issue, stored and processed here; its thank-you is sent by the worker after commit.
    ledger = deliver(make_email(to=address, subject="Printer on fire"))
    assert ledger.outcome == "issue_created", ledger.reason
    issue = Issue.objects.get(pk=ledger.issue_id)
    wait_for(lambda: to_customers(smtp), 30, "the thank-you by SMTP", worker)
    wait_for(
        lambda: OutboundEmail.objects.exclude(kind="team").filter(status=Status.SENT).count() == 1,
        15,
        "thank-you sent",
        worker,
    )
    smtp.clear()

    # The SMTP server goes down; a team member comments, as the note_add view does.
    smtp.stop()
    with transaction.atomic():
        note = note_create(issue=issue, author=owner, body="We fixed it in version 2.3.2.")
        [email] = note_added(note)
    assert (email.kind, email.recipient) == (OutboundEmail.Kind.NEW_NOTE, CUSTOMER)

    failed = wait_for(
        lambda: (r := row(email)).status == Status.PENDING and r.attempts == 1 and r,
        30,
        "the first attempt to fail",
        worker,
    )
    assert "ConnectionRefusedError" in failed.last_error, failed.last_error
    assert failed.sent_at is None
    backoff = failed.next_attempt_at - failed.claimed_at
    assert timedelta(seconds=10) <= backoff < timedelta(seconds=15), backoff
    assert outbound_sweep() == 0  # not due before its backoff: nothing enqueued
    assert to_customers(smtp) == []

    # The server is back; the retry is made due and the sweeper (beat's task) enqueues it.
    smtp.start()
    OutboundEmail.objects.exclude(kind="team").filter(pk=email.pk).update(
        next_attempt_at=timezone.now()
    )
    assert run_task(worker, sweep_outbound) == "1"
    [captured] = wait_for(lambda: to_customers(smtp), 30, "the comment by SMTP", worker)
    sent = wait_for(
        lambda: (r := row(email)).status == Status.SENT and r, 15, "the row marked sent", worker
    )
    assert (sent.attempts, sent.last_error) == (2, "")
    assert sent.sent_at is not None
    assert (captured.envelope_from, captured.recipients) == (FROM_ADDRESS, [CUSTOMER])
    message = captured.message
    assert message["Message-ID"] == email.message_id
    assert message["In-Reply-To"] == issue_message_id(issue)
    assert message["Subject"] == f"Re: Printer on fire (#{issue.iid})"
    assert "We fixed it in version 2.3.2." in message.get_body(("plain",)).get_content()

    # Exactly once: a later sweep finds nothing due, a duplicate task finds nothing to claim.
    assert run_task(worker, sweep_outbound) == "0"
    # The task has finished when run_task returns: anything it sent is at the server already.
    run_task(worker, send_outbound_emails, [email.pk])
    assert len(to_customers(smtp)) == 1, state()
    assert (row(email).status, row(email).attempts) == (Status.SENT, 2)
    assert (
        OutboundEmail.objects.exclude(kind="team").filter(issue=issue).count() == 2
    )  # thank-you and the comment
