"""The non-IMAP transports: ESP webhooks (django-anymail), the stdin pipe, the SMTP/LMTP intake."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from issues.models import Issue
from mailroom.ledger import inbound_claim, inbound_process
from mailroom.models import InboundMessage
from tests.harness.services import free_port, port_open, wait_until

from .helpers import ALIAS, INCOMING, make_email

ROOT = Path(__file__).resolve().parents[2]
AUTH = "Basic " + base64.b64encode(b"hook:s3cret").decode()


@pytest.fixture
def mailboxes(settings):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.SERVICEDESK_INBOUND_ESPS = ["mailgun", "postmark", "sendgrid", "amazon_ses"]
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": "hook:s3cret",
        "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-signing-key",
    }


@pytest.fixture
def raw(project, mailboxes) -> bytes:  # type: ignore[no-untyped-def]
    to = INCOMING.address_for(project.service_desk.default_key)
    return make_email(to=to, subject="Sent through the ESP", body="Hello from a webhook")


def stored_and_processed(transport: str) -> Issue:
    row = InboundMessage.objects.get(transport=transport)
    assert b"Sent through the ESP" in bytes(row.raw)
    claimed, token = inbound_claim([row.pk])
    assert claimed == [row.pk]
    inbound_process(row.pk, token)
    processed = InboundMessage.objects.get(pk=row.pk)
    assert processed.outcome == "issue_created", processed.reason
    return Issue.objects.get(pk=processed.issue_id)


def mailgun_signature(timestamp: str, token: str) -> str:
    return hmac.new(
        b"mailgun-signing-key", f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()


@pytest.mark.django_db
def test_mailgun_inbound_with_valid_signature_is_stored(client, raw) -> None:
    timestamp, token = str(int(time.time())), "a" * 50
    response = client.post(
        "/-/anymail/mailgun/inbound_mime/",
        {
            "body-mime": raw.decode(),
            "timestamp": timestamp,
            "token": token,
            "signature": mailgun_signature(timestamp, token),
        },
        HTTP_AUTHORIZATION=AUTH,
    )
    assert response.status_code == 200
    assert stored_and_processed("webhook:mailgun").title == "Sent through the ESP"


@pytest.mark.django_db
def test_mailgun_inbound_with_bad_signature_stores_nothing(client, raw) -> None:
    response = client.post(
        "/-/anymail/mailgun/inbound_mime/",
        {"body-mime": raw.decode(), "timestamp": "1", "token": "t", "signature": "forged"},
        HTTP_AUTHORIZATION=AUTH,
    )
    assert response.status_code == 400
    assert not InboundMessage.objects.exists()


@pytest.mark.django_db
def test_postmark_inbound_raw_email(client, raw) -> None:
    payload = {"RawEmail": raw.decode(), "MessageID": "x", "From": "jake@customer.example"}
    response = client.post(
        "/-/anymail/postmark/inbound/",
        json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=AUTH,
    )
    assert response.status_code == 200
    stored_and_processed("webhook:postmark")


@pytest.mark.django_db
def test_postmark_without_basic_auth_is_refused(client, raw) -> None:
    response = client.post(
        "/-/anymail/postmark/inbound/",
        json.dumps({"RawEmail": raw.decode()}),
        content_type="application/json",
    )
    assert response.status_code in (400, 401, 403)
    assert not InboundMessage.objects.exists()


# django-anymail 15 still ships SendGrid's webhooks but no longer supports them officially
# (anymail issue #432); the README says so.
@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
@pytest.mark.django_db
def test_sendgrid_inbound_send_raw(client, raw) -> None:
    response = client.post(
        "/-/anymail/sendgrid/inbound/",
        {"email": raw.decode(), "to": "x", "from": "jake@customer.example"},
        HTTP_AUTHORIZATION=AUTH,
    )
    assert response.status_code == 200
    stored_and_processed("webhook:sendgrid")


@pytest.mark.django_db
def test_amazon_ses_inbound_sns_notification(client, raw) -> None:
    ses_event = {
        "notificationType": "Received",
        "mail": {"messageId": "ses-1", "source": "jake@customer.example", "destination": []},
        "receipt": {"action": {"type": "SNS", "encoding": "BASE64"}},
        "content": base64.b64encode(raw).decode(),
    }
    sns = {
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": "arn:aws:sns:eu-west-1:1:inbound",
        "Message": json.dumps(ses_event),
        "Timestamp": "2026-11-21T10:00:00.000Z",
    }
    response = client.post(
        "/-/anymail/amazon_ses/inbound/",
        json.dumps(sns),
        content_type="text/plain; charset=UTF-8",
        HTTP_AUTHORIZATION=AUTH,
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
        HTTP_X_AMZ_SNS_MESSAGE_ID="sns-1",
    )
    assert response.status_code == 200
    stored_and_processed("webhook:amazon_ses")


@pytest.mark.django_db
def test_receive_email_command_stores_and_processes(monkeypatch, raw) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    out = io.StringIO()
    call_command("receive_email", "--now", stdout=out)
    assert "issue_created" in out.getvalue()
    assert Issue.objects.get().title == "Sent through the ESP"


@pytest.mark.django_db
def test_receive_email_with_empty_stdin_exits_dataerr(monkeypatch, mailboxes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(SystemExit) as exit_info:
        call_command("receive_email", stdout=io.StringIO(), stderr=io.StringIO())
    assert exit_info.value.code == 65


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
@pytest.mark.django_db(transaction=True)
def test_smtpd_stores_before_answering_250(raw, lmtp) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": os.environ["DATABASE_URL"].rsplit("/", 1)[0]
        + f"/{connection.settings_dict['NAME']}",
    }
    command = [sys.executable, "manage.py", "smtpd", "--port", str(port)]
    server = subprocess.Popen(
        command + (["--lmtp"] if lmtp else []), cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), 30, "the intake to listen")
        client_class = smtplib.LMTP if lmtp else smtplib.SMTP
        with client_class("127.0.0.1", port) as client:
            refused = client.sendmail("jake@customer.example", ["anyone@example.test"], raw)
        assert refused == {}
        row = InboundMessage.objects.get()
        assert row.transport == ("lmtp" if lmtp else "smtp")
        # smtplib ends the DATA with CRLF when the message does not: compare the content.
        assert (
            bytes(row.raw).replace(b"\r\n", b"\n").rstrip() == raw.replace(b"\r\n", b"\n").rstrip()
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
