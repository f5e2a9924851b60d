"""The harness itself: each real service starts and does its job, end to end."""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest
from django.core import mail
from django.db import connection

from mailroom.models import WorkerHeartbeat
from mailroom.tasks import record_worker_heartbeat


def test_database_is_postgresql(db) -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        assert cursor.fetchone()[0]


def test_redis_is_the_celery_broker(redis_server, settings) -> None:
    assert redis_server.url == settings.CELERY_BROKER_URL
    assert redis_server.ping()


@pytest.mark.django_db(transaction=True)
def test_task_sent_through_redis_runs_in_the_worker_and_writes_the_database(
    celery_worker,
) -> None:
    result = record_worker_heartbeat.apply_async()
    assert result.id

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        heartbeat = WorkerHeartbeat.objects.filter(hostname__startswith="session-worker@").first()
        if heartbeat is not None:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the worker did not record a heartbeat; log: {celery_worker.log_path}")
    assert heartbeat.beats == 1


def _message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jake <jake@example.org>"
    msg["To"] = "support+acme-game-1-issue-@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}@example.org>"
    msg.set_content("Hello from the harness test.\n")
    return msg.as_bytes()


def test_imap_append_then_fetch_without_marking_seen(imap_mailbox) -> None:
    with imap_mailbox.imap("support") as client:
        client.append("INBOX", _message("harness append"))
        client.select_folder("INBOX")
        uids = client.search("ALL")
        assert len(uids) == 1
        fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"])[uids[0]]
        assert b"Subject: harness append" in fetched[b"BODY[]"]
        assert b"\\Seen" not in fetched[b"FLAGS"]


def test_imaps_login_works(imap_mailbox) -> None:
    with imap_mailbox.imap("support", ssl=True) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_lmtp_delivery_adds_delivered_to_with_the_detail(imap_mailbox) -> None:
    imap_mailbox.deliver_lmtp(_message("via lmtp"), "support+acme-game-1-issue-@example.test")
    with imap_mailbox.imap("support") as client:
        client.select_folder("INBOX")
        uids = client.search("ALL")
        raw = client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
    assert b"Delivered-To: support+acme-game-1-issue-@example.test" in raw


def test_django_smtp_backend_delivers_to_the_capture_server(smtp) -> None:
    sent = mail.send_mail(
        "Capture me", "Body text", "support@servicedesk.test", ["jake@example.org"]
    )
    assert sent == 1
    [captured] = smtp.wait_for(1)
    assert captured.recipients == ["jake@example.org"]
    assert captured.message["Subject"] == "Capture me"
    assert captured.message.get_content().strip() == "Body text"


def test_smtp_outage_refuses_then_recovers(smtp) -> None:
    smtp.stop()
    with pytest.raises(ConnectionRefusedError):
        mail.send_mail("Lost", "x", "support@servicedesk.test", ["jake@example.org"])
    smtp.start()
    mail.send_mail("Found", "x", "support@servicedesk.test", ["jake@example.org"])
    assert [m.message["Subject"] for m in smtp.wait_for(1)] == ["Found"]


def test_a_second_postgresql_can_be_restarted_on_its_port() -> None:
    """Fault tests restart PostgreSQL; here on a throwaway instance of its own."""
    from tests.harness.plugin import harness
    from tests.harness.services import PostgresServer

    # Under the harness's directory: the postgres user must be able to enter it.
    server = PostgresServer(harness().base / "restartable-postgres").start()
    try:
        port = server.port
        server.execute("CREATE TABLE survives (x int)")
        server.restart()
        assert server.port == port
        server.execute("SELECT * FROM survives", dbname="postgres")
    finally:
        server.stop()
