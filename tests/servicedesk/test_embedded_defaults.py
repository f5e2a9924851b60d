"""`make run`'s embedded defaults: SQLite and no Redis. The suite runs on PostgreSQL, so this
runs the inbound pipeline (bulk and one-by-one paths) on SQLite in a subprocess, and sends the
thank-you emails with the development file backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import django
django.setup()
from django.core.management import call_command
from email.message import EmailMessage
call_command("migrate", verbosity=0)
import io
call_command("demo", stdout=io.StringIO())
from projects.models import Project
from mailroom.ledger import inbound_store, inbound_claim, inbound_process_batch
from mailroom.models import InboundMessage
from issues.models import Issue
project = Project.objects.get(full_path="acme/game")
to = f"incoming+{project.service_desk.default_key}@servicedesk.localhost"

def mail(subject, attach=False, reply_to=None):
    m = EmailMessage()
    m["From"] = "jake@customer.example"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@c.example>"
    if reply_to:
        m["In-Reply-To"] = reply_to
    m.set_content("Body of " + subject)
    if attach:
        m.add_attachment(b"data", maintype="application", subtype="pdf", filename="a.pdf")
    return m.as_bytes()

raws = [mail("one"), mail("two", attach=True), mail("re one", reply_to="<one@c.example>"),
        mail("one")]
ids = [inbound_store(raw=r, transport="test", enqueue=False).pk for r in raws]
claimed, token = inbound_claim(ids)
inbound_process_batch(claimed, token)
for row in InboundMessage.objects.filter(pk__in=ids).order_by("pk"):
    print(row.status, row.outcome)
print("iids", sorted(Issue.objects.filter(project=project).values_list("iid", flat=True))[-2:])
from issues.models import OutboundEmail
from issues.outbox import outbound_claim, outbound_send
# The batch sends its thank-yous itself once it commits; what it left (none) goes now.
customers = OutboundEmail.objects.exclude(kind="team").filter(issue__iid__in=[5, 6])
left = customers.filter(status="pending").values_list("pk", flat=True)
claimed, token = outbound_claim(list(left))
outbound_send(claimed, token)
print("sent", sorted(customers.values_list("status", flat=True)))
from notifications.services import events_deliver
events_deliver()  # the task's work (make run's worker does it)
team = OutboundEmail.objects.filter(kind="team", issue__iid__in=[5, 6])
print("team", sorted(set(team.values_list("recipient", flat=True))))
"""


def test_inbound_pipeline_runs_on_sqlite_without_redis(tmp_path) -> None:
    scrubbed = ("DATABASE_", "REDIS_", "SERVICEDESK_", "EMAIL_", "SECRET_KEY", "SITE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
    env.update(
        DJANGO_SETTINGS_MODULE="servicedesk.settings",
        SERVICEDESK_VAR_DIR=str(tmp_path),
        DEMO_PASSWORD="embedded-demo-pass",
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "servicedesk.sqlite3").exists()
    lines = result.stdout.strip().splitlines()
    assert lines[:4] == [
        "done issue_created",
        "done issue_created",
        "done note_added",
        "done ignored",
    ]
    # The demo made issues 1-4; the batch added two more.
    assert lines[4] == "iids [5, 6]"
    # Their thank-you emails went to files under var/mail/, where `make run` says to look.
    assert lines[5] == "sent ['sent', 'sent']"
    # The team hears about the new tickets: the Reporters and up (alice, bob), not the Guest.
    assert lines[6] == "team ['alice@acme.example', 'bob@acme.example']"
    written = "".join(p.read_text() for p in (tmp_path / "mail").glob("*.log"))
    assert written.count("Subject: Re: ") == 2
    assert "Thank you for your message" in written
    assert "Subject: Re: two (#6)" in written
