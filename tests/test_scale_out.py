"""Scale-out, as on separate machines: two web processes (gunicorn), two processing workers and
two mailbox pollers, each in its own process group, sharing one PostgreSQL and one Redis and
nothing else. A mixed corpus goes through Dovecot; the ledger must then hold every email once
with an outcome, no issue twice, each thank-you sent once, and a session opened on one web
process must work on the other (README, "Running on more machines")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import httpx
import pytest
import redis
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.urls import reverse

from issues.models import Issue, Note, OutboundEmail
from mailroom.models import InboundMessage
from servicedesk.config import load_mailboxes
from tests.harness.plugin import harness
from tests.harness.services import _terminate, free_port, port_open, wait_until
from tests.issues.test_outbound import PNG
from tests.mailroom.test_imap import append, send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
EMAILS = 200
# Its own Redis database for the broker and the poller lock: no other test's worker is on it.
BROKER_DB = 3
PASSWORD = "correct horse battery"


def corpus(address: str) -> tuple[list[bytes], dict[str, int]]:
    """``EMAILS`` emails of five kinds, and how many of each: new tickets as text, as HTML and
    with files, replies to an earlier ticket of the corpus (which may still be queued when the
    reply is processed), and automatic replies (ignored, never answered)."""
    raws: list[bytes] = []
    kinds: Counter[str] = Counter()
    ticket_ids: list[str] = []
    for i in range(EMAILS):
        message = EmailMessage()
        message["From"] = f"Customer {i} <customer{i}@scale.example>"
        message["To"] = address
        message["Message-ID"] = make_msgid(domain="scale.example")
        kind = ["text", "html", "files", "reply", "auto"][i % 5]
        kinds[kind] += 1
        if kind == "reply":
            parent = ticket_ids[-2]
            message["Subject"] = f"Re: reply {i}"
            message["In-Reply-To"] = message["References"] = parent
            message.set_content(f"Any news on this? ({i})")
        elif kind == "auto":
            message["Subject"] = f"Out of office {i}"
            message["Auto-Submitted"] = "auto-replied"
            message.set_content("I am away until Monday.")
        else:
            message["Subject"] = f"Ticket {i}"
            if kind == "html":
                message.set_content(f"<p>The game <b>crashes</b> on level {i}.</p>", subtype="html")
            else:
                message.set_content(f"The game crashes on level {i}.")
            if kind == "files":
                message.add_attachment(PNG, maintype="image", subtype="png", filename="shot.png")
            ticket_ids.append(str(message["Message-ID"]))
        raws.append(message.as_bytes())
    return raws, dict(kinds)


@pytest.fixture
def env(imap_mailbox, redis_server, settings, smtp) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """What every machine is given: the shared database, Redis and settings."""
    broker = redis_server.url.rsplit("/", 1)[0] + f"/{BROKER_DB}"
    h = harness()
    assert h.postgres is not None
    env = {
        "DATABASE_URL": h.postgres.url.rsplit("/", 1)[0] + f"/{connection.settings_dict['NAME']}",
        "REDIS_URL": broker,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "PYTHONUNBUFFERED": "1",
        "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
        "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
        "SERVICEDESK_INCOMING_EMAIL_HOST": "127.0.0.1",
        "SERVICEDESK_INCOMING_EMAIL_PORT": str(imap_mailbox.port_imap),
        "SERVICEDESK_INCOMING_EMAIL_USER": "support",
        "SERVICEDESK_INCOMING_EMAIL_PASSWORD": imap_mailbox.password,
        "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "2",
        "SERVICEDESK_IMAP_LOCK_TTL": "6",
        "SERVICEDESK_IMAP_LEASE": "120",
        "SERVICEDESK_NEW_ISSUES_PER_MINUTE": "0",
        # Twenty processing tasks, not two: with 100 emails a task (the default) one machine's
        # two processes could take the whole corpus, and the test would not show sharing.
        "SERVICEDESK_INBOUND_TASK_BATCH": "10",
    }
    settings.SERVICEDESK_MAILBOXES = load_mailboxes(None, environ=env)
    redis.Redis.from_url(broker).flushdb()
    return env


@pytest.fixture
def web(env) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """Two gunicorn processes, each in its own process group, on the shared services."""
    procs, urls = [], []
    for name in ("web-a", "web-b"):
        port = free_port()
        log = open(harness().base / f"{name}.log", "ab")  # noqa: SIM115 - closed below
        procs.append((log, subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "servicedesk.wsgi:application", "--workers", "1",
             "--bind", f"127.0.0.1:{port}", "--timeout", "60"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )))  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            wait_until(lambda url=url: port_open(int(url.rsplit(":", 1)[1])), 60, "gunicorn")
        yield urls
    finally:
        for log, proc in procs:
            _terminate(proc)
            log.close()


def test_two_machines_process_the_corpus_once_and_share_sessions(
    project, reporter, imap_mailbox, worker_factory, env, web, smtp, settings
) -> None:
    address = settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
        project.service_desk.default_key
    )
    raws, kinds = corpus(address)
    tickets = kinds["text"] + kinds["html"] + kinds["files"]

    processors = [
        worker_factory(name=name, env=env, queues="celery,outbound", concurrency=2)
        for name in ("processor-a", "processor-b")
    ]
    # A poller on each machine; the per-mailbox lock lets one of them fetch at a time.
    for name in ("poller-a", "poller-b"):
        worker_factory(name=name, env=env, queues="mailbox", concurrency=1)
    append(imap_mailbox, raws)
    for _ in range(2):  # as beat does on every interval: each poller gets a turn
        send(env, "mailroom.tasks.poll_mailbox", "incoming_email", queue="mailbox")

    done = InboundMessage.objects.filter(status="done")
    wait_for(lambda: done.count() == EMAILS, 90, f"{EMAILS} emails processed")
    thank_yous = OutboundEmail.objects.filter(kind="thank_you")
    wait_for(lambda: thank_yous.filter(status="sent").count() == tickets, 30, "thank-yous sent")

    # Every email stored once (by Message-ID), each with its outcome.
    rows = list(InboundMessage.objects.values_list("message_id", "outcome"))
    assert len(rows) == EMAILS
    assert len({message_id for message_id, _ in rows}) == EMAILS
    assert Counter(outcome for _, outcome in rows) == {
        "issue_created": tickets, "note_added": kinds["reply"], "ignored": kinds["auto"],
    }  # fmt: skip
    # Both machines' workers took part.
    for worker in processors:
        log = worker.log_path.read_text()
        assert re.search(r"Task mailroom\.tasks\.process_inbound\[.*\] succeeded", log), worker.name
    # No issue twice; the replies are notes on their tickets.
    titles = list(Issue.objects.filter(project=project).values_list("title", flat=True))
    assert len(titles) == tickets
    assert len(set(titles)) == tickets
    assert Note.objects.filter(body__startswith="Any news on this?").count() == kinds["reply"]
    # One thank-you per ticket, recorded once and received once by the SMTP server.
    assert sorted(thank_yous.values_list("issue_id", flat=True)) == sorted(
        Issue.objects.filter(project=project).values_list("pk", flat=True)
    )
    received = Counter(
        mail.message["Message-ID"] for mail in smtp.messages if "customer" in mail.recipients[0]
    )
    assert sorted(received) == sorted(thank_yous.values_list("message_id", flat=True))
    assert set(received.values()) == {1}

    # One sign-in, on one web process; the same session on the other.
    PBKDF2 = PBKDF2PasswordHasher()
    reporter.password = PBKDF2.encode(PASSWORD, PBKDF2.salt())
    reporter.save(update_fields=["password"])
    first, second = web
    with httpx.Client(base_url=first) as browser:
        form = browser.get(reverse("login")).text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert token is not None
        signed_in = browser.post(reverse("login"), data={
            "username": reporter.username, "password": PASSWORD,
            "csrfmiddlewaretoken": token[1],
        })  # fmt: skip
        assert signed_in.status_code == 302, signed_in.text[-500:]
        cookies = dict(browser.cookies)
    issues_url = reverse("issue_list", args=[project.full_path])
    for url in (first, second):
        with httpx.Client(base_url=url, cookies=cookies) as browser:
            page = browser.get(issues_url, params={"state": "all"})
            assert page.status_code == 200, (url, page.status_code)
            shown = set(re.findall(r">\s*(Ticket \d+)\s*<", page.text))
            assert shown, page.text[-2000:]
            assert shown <= set(titles)
        with httpx.Client(base_url=url) as stranger:
            assert stranger.get(issues_url).status_code in (302, 404)
