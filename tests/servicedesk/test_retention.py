"""Retention (servicedesk/retention.py): after N days the content of finished emails and webhook
requests is removed, their rows kept; unfinished rows are never touched; the ledgers, the admin
and Retry / Reprocess / Resend say so. The suite's PostgreSQL first, then SQLite in a
subprocess, both with the clock moved on past the retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from issues.models import OutboundEmail
from mailroom.models import InboundMessage
from servicedesk import retention
from tests.factories import UserFactory
from webhooks.models import Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)


def outbound(project, status: str, **fields) -> OutboundEmail:  # type: ignore[no-untyped-def]
    n = OutboundEmail.objects.count()
    return OutboundEmail.objects.create(
        kind="new_note", project=project, recipient="jake@customer.example",
        from_email="support@servicedesk.test", subject=f"Re: Crash {n}",
        message_id=f"<m{n}@servicedesk.test>", body_text="We fixed the crash.",
        body_html="<p>We fixed the crash.</p>", status=status, **fields,
    )  # fmt: skip


def inbound(project, status: str, outcome: str = "", **fields) -> InboundMessage:  # type: ignore[no-untyped-def]
    return InboundMessage.objects.create(
        transport="imap", mailbox="incoming_email", raw=b"Subject: Crash\r\n\r\nHelp", size=24,
        status=status, outcome=outcome, project=project, from_address="jake@customer.example",
        subject="Crash", **fields,
    )  # fmt: skip


def delivery(project, status: str) -> WebhookDelivery:  # type: ignore[no-untyped-def]
    hook = Webhook.objects.filter(project=project).first() or Webhook.objects.create(
        project=project, url="https://hooks.example.test/in"
    )
    return WebhookDelivery.objects.create(
        hook=hook, event="issue", payload={"object_kind": "issue", "title": "Crash"},
        status=status, response_status=200, response_body="ok",
    )  # fmt: skip


def rows(project):  # type: ignore[no-untyped-def]
    """One of each kind of row, recorded now; the test then moves the clock on."""
    return {
        "sent": outbound(project, "sent", sent_at=timezone.now()),
        "failed": outbound(project, "failed", last_error="550 no such user"),
        "pending": outbound(project, "pending", attempts=3, next_attempt_at=timezone.now()),
        "sending": outbound(project, "sending"),
        "done": inbound(project, "done", "rejected"),
        "inbound_failed": inbound(project, "failed", "failed"),
        "queued": inbound(project, "queued", attempts=2),
        "processing": inbound(project, "processing"),
        "quarantined": inbound(project, "done", "spam"),
        "spam_confirmed": inbound(project, "done", "spam", spam_reviewed_at=timezone.now()),
        "hook_sent": delivery(project, "sent"),
        "hook_failed": delivery(project, "failed"),
        "hook_pending": delivery(project, "pending"),
    }


def age(days: int) -> None:
    """Every row recorded ``days`` ago."""
    then = timezone.now() - days * DAY
    OutboundEmail.objects.update(created_at=then)
    InboundMessage.objects.update(received_at=then)
    WebhookDelivery.objects.update(created_at=then)


def fresh(row):  # type: ignore[no-untyped-def]
    return type(row).objects.get(pk=row.pk)


def test_only_finished_rows_older_than_the_setting_lose_their_content(project, settings) -> None:
    settings.SERVICEDESK_RETENTION_INBOUND_DAYS = 30
    made = rows(project)
    age(29)
    assert retention.apply_retention() == {"outbound": 0, "inbound": 0, "webhooks": 0}
    age(31)
    assert retention.apply_retention() == {"outbound": 0, "inbound": 3, "webhooks": 0}
    now = timezone.now()
    # A year and a day later (the outbound and webhook default): two statements of two rows.
    assert retention.apply_retention(now=now + 335 * DAY, dry_run=True) == {
        "outbound": 2, "inbound": 0, "webhooks": 2,
    }  # fmt: skip
    assert retention.apply_retention(now=now + 335 * DAY, batch=1) == {
        "outbound": 2, "inbound": 0, "webhooks": 2,
    }  # fmt: skip
    assert retention.apply_retention(now=now + 3000 * DAY) == {
        "outbound": 0, "inbound": 0, "webhooks": 0,
    }  # fmt: skip

    for name in ("sent", "failed"):
        email = fresh(made[name])
        assert (email.body_text, email.body_html, email.retention_days) == ("", "", 365)
        # The row: who, what, which Message-ID, how it ended.
        assert email.recipient == "jake@customer.example"
        assert email.message_id == made[name].message_id
        assert email.status == made[name].status
        assert email.subject == made[name].subject
    assert fresh(made["failed"]).last_error == "550 no such user"
    for name in ("pending", "sending"):
        email = fresh(made[name])
        assert (email.body_text, email.retention_days) == ("We fixed the crash.", None)

    for name in ("done", "inbound_failed", "spam_confirmed"):
        row = fresh(made[name])
        assert (bytes(row.raw), row.retention_days, row.size) == (b"", 30, 24)
        assert (row.outcome, row.subject) == (made[name].outcome, "Crash")
    for name in ("queued", "processing", "quarantined"):
        row = fresh(made[name])
        assert (bytes(row.raw)[:13], row.retention_days) == (b"Subject: Cras", None)

    for name in ("hook_sent", "hook_failed"):
        hook = fresh(made[name])
        assert (hook.payload, hook.response_body, hook.retention_days) == ({}, "", 365)
        assert (hook.status, hook.response_status, hook.event) == (made[name].status, 200, "issue")
    assert fresh(made["hook_pending"]).payload == {"object_kind": "issue", "title": "Crash"}


def test_zero_days_keeps_everything(project, settings) -> None:
    settings.SERVICEDESK_RETENTION_OUTBOUND_DAYS = 0
    settings.SERVICEDESK_RETENTION_INBOUND_DAYS = 0
    settings.SERVICEDESK_RETENTION_WEBHOOK_DAYS = 0
    made = rows(project)
    age(10_000)
    assert retention.apply_retention() == {"outbound": 0, "inbound": 0, "webhooks": 0}
    assert fresh(made["sent"]).body_text == "We fixed the crash."


def test_the_command_counts_then_clears(project, settings, monkeypatch) -> None:
    rows(project)
    later = timezone.now() + 366 * DAY
    monkeypatch.setattr(retention.timezone, "now", lambda: later)  # the clock, a year on
    out = StringIO()
    call_command("apply_retention", "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        "outbound: 2 would be cleared (older than 365 days)",
        "inbound: 3 would be cleared (older than 365 days)",
        "webhooks: 2 would be cleared (older than 365 days)",
    ]
    assert OutboundEmail.objects.filter(retention_days=None).count() == 4
    out = StringIO()
    call_command("apply_retention", stdout=out)
    assert "outbound: 2 cleared (older than 365 days)" in out.getvalue()
    assert OutboundEmail.objects.filter(retention_days=None).count() == 2


def test_beat_runs_it_daily(settings) -> None:
    from issues import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["apply-retention"]
    assert entry["task"] == "issues.tasks.apply_retention"
    assert entry["schedule"].hour == {3}
    assert entry["schedule"].minute == {17}
    assert tasks.apply_retention.name == "issues.tasks.apply_retention"


def test_pages_say_it_was_removed_and_refuse_to_send_or_process_again(
    client, project, owner, settings
) -> None:
    made = rows(project)
    age(400)
    retention.apply_retention()
    client.force_login(owner)
    path = project.full_path

    failed = made["failed"]
    page = client.get(reverse("project_outbound_detail", args=[path, failed.pk])).content.decode()
    assert "The body was removed after 365 days (retention)." in page
    assert "It cannot be sent again: its content was removed after 365 days" in page
    assert "We fixed the crash" not in page
    response = client.post(reverse("project_outbound_retry", args=[path, failed.pk]))
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"Email #{failed.pk} cannot be sent again: its content was removed after 365 days "
        "(retention)."
    ]
    assert fresh(failed).status == "failed"

    row = made["inbound_failed"]
    page = client.get(reverse("project_inbound_detail", args=[path, row.pk])).content.decode()
    assert "The raw email was removed after 365 days (retention)." in page
    assert f"Email #{row.pk} cannot be processed again: its raw bytes were removed" in page
    raw = client.get(reverse("project_inbound_raw", args=[path, row.pk]))
    assert raw.status_code == 410
    assert raw.content.decode() == "Removed after 365 days (retention)."
    response = client.post(reverse("project_inbound_reprocess", args=[path, row.pk]))
    assert response.status_code == 302
    assert fresh(row).status == "failed"
    # The other rows still work as before.
    queued = made["queued"]
    assert client.get(reverse("project_inbound_raw", args=[path, queued.pk])).status_code == 200
    list_page = client.get(reverse("project_outbound_list", args=[path]))
    assert list_page.status_code == 200

    hook = made["hook_sent"]
    args = [path, hook.hook_id, hook.pk]
    page = client.get(reverse("webhook_delivery", args=args)).content.decode()
    assert "The request and the answer were removed after 365 days (retention)." in page
    assert "Resend request" not in page
    response = client.post(reverse("webhook_delivery_resend", args=args))
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "This request cannot be sent again: it was removed after 365 days (retention)."
    ]
    assert WebhookDelivery.objects.count() == 3  # nothing queued

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    admin = client.get(reverse("admin:issues_outboundemail_change", args=[failed.pk]))
    assert "Removed after 365 days (retention)." in admin.content.decode()
    admin = client.get(reverse("admin:mailroom_inboundmessage_change", args=[row.pk]))
    assert "Removed after 365 days (retention)." in admin.content.decode()
    admin = client.get(reverse("admin:mailroom_inboundmessage_change", args=[queued.pk]))
    assert "24 bytes" in admin.content.decode()


SCRIPT = r"""
import json
from datetime import timedelta
import django
django.setup()
from django.core.management import call_command
from django.utils import timezone
call_command("migrate", verbosity=0)
from issues.models import OutboundEmail
from mailroom.models import InboundMessage
from servicedesk.retention import apply_retention

def email(n, status):
    return OutboundEmail.objects.create(kind="new_note", recipient="jake@customer.example",
        from_email="s@x.test", subject="Hi", message_id=f"<m{n}@x.test>", body_text="Body",
        body_html="<p>Body</p>", status=status)

emails = [email(n, status) for n, status in enumerate(["sent"] * 5 + ["failed", "pending"])]
raws = [InboundMessage.objects.create(transport="smtp", raw=b"raw", size=3, status=status)
        for status in ["done", "done", "queued"]]
year_on = timezone.now() + timedelta(days=366)
out = [apply_retention(now=year_on - timedelta(days=2)), apply_retention(now=year_on, batch=2),
       apply_retention(now=year_on)]
out.append(sorted(OutboundEmail.objects.values_list("status", "body_text", "retention_days")))
inbound = InboundMessage.objects.values_list("status", "raw")
out.append(sorted((status, bytes(raw).decode()) for status, raw in inbound))
print(json.dumps(out))
"""


def test_on_sqlite_too(tmp_path) -> None:
    scrubbed = ("DATABASE_", "REDIS_", "SERVICEDESK_", "EMAIL_", "SECRET_KEY", "SITE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
    env.update(DJANGO_SETTINGS_MODULE="servicedesk.settings", SERVICEDESK_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    nothing = {"outbound": 0, "inbound": 0, "webhooks": 0}
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        nothing,
        {"outbound": 6, "inbound": 2, "webhooks": 0},
        nothing,
        [["failed", "", 365]] + [["pending", "Body", None]] + [["sent", "", 365]] * 5,
        [["done", ""], ["done", ""], ["queued", "raw"]],
    ]
