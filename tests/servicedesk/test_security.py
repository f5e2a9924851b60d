"""Security settings: the Content-Security-Policy, Django's deployment checklist, and the ESP
webhooks being closed unless configured."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import Client
from django.urls import reverse

from mailroom.models import InboundMessage

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_AUTH = "Basic " + base64.b64encode(b"hook:s3cret").decode()
RAW = "From: jake@customer.example\r\nTo: help@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"


@pytest.mark.django_db
def test_every_page_forbids_inline_script(client, reporter) -> None:
    client.force_login(reporter)
    for url in (reverse("home"), reverse("login"), reverse("issue_list", args=["acme/game"])):
        policy = client.get(url)["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["script-src"] == "'self'", url
        assert "unsafe-inline" not in directives["script-src"]
        assert "unsafe-eval" not in directives["script-src"]
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["img-src"] == "'self' data:"


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` in a fresh process with production settings and nothing of ours
    from the environment except ``env``."""
    scrubbed = ("DATABASE_", "REDIS_", "SERVICEDESK_", "EMAIL_", "SECRET_KEY", "SITE_URL", "DEBUG",
                "ANYMAIL_", "DJANGO_ALLOW_ASYNC_UNSAFE")  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
    clean.update(
        DJANGO_SETTINGS_MODULE="servicedesk.settings",
        SERVICEDESK_ENV="production",
        SERVICEDESK_VAR_DIR=str(tmp_path),
        SECRET_KEY="a-production-secret-" + "x7Qz9#" * 10,
        SITE_URL="https://support.example.com",
        AKISMET_API_KEY="configured",
        **{"SERVICEDESK_ENCRYPTION_KEYS": "efFuI-EfQcrU4EIW97OY2uGFnNlWQ8VQNmo3py4yvek=", **env},
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_with_production_settings(tmp_path) -> None:
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_without_encryption_keys_is_warned(tmp_path) -> None:
    result = manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING", SERVICEDESK_ENCRYPTION_KEYS=""
    )
    assert result.returncode != 0
    assert "projects.W001" in result.stderr


@pytest.mark.parametrize("command", [["check"], ["check", "--deploy"]])
def test_production_with_an_inbound_webhook_and_no_secret_fails_the_checks(
    tmp_path, command
) -> None:
    # Not only --deploy: `migrate` runs the plain checks, so a production stack never starts.
    result = manage(tmp_path, *command, SERVICEDESK_INBOUND_ESPS="postmark")
    assert result.returncode != 0
    assert "mailroom.E001" in result.stderr
    assert "ANYMAIL_WEBHOOK_SECRET is unset" in result.stderr


def test_production_with_an_inbound_webhook_and_its_secret_passes_check_deploy(tmp_path) -> None:
    result = manage(
        tmp_path,
        *("check", "--deploy", "--fail-level", "WARNING"),
        SERVICEDESK_INBOUND_ESPS="postmark",
        ANYMAIL_WEBHOOK_SECRET="hook:" + "s3cret" * 6,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def post_to_postmark(client: Client, **extra: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/-/anymail/postmark/inbound/",
        json.dumps({"RawEmail": RAW, "MessageID": "m-1", "From": "jake@customer.example"}),
        content_type="application/json",
        **extra,
    )


@pytest.fixture
def postmark_configured(settings):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_INBOUND_ESPS = ["postmark"]
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/-/anymail/mailgun/inbound_mime/",  # inbound webhooks of ESPs we could use, not configured
        "/-/anymail/sendgrid/inbound/",
        "/-/anymail/amazon_ses/inbound/",
        "/-/anymail/sparkpost/inbound/",  # an ESP anymail knows and we never route
        "/-/anymail/postmark/tracking/",  # tracking webhooks, even the configured ESP's
        "/-/anymail/mailgun/tracking/",
        "/-/anymail/mandrill/",
    ],
)
def test_only_the_configured_esps_inbound_webhook_is_routed(
    client, postmark_configured, url
) -> None:
    response = client.post(
        url, "{}", content_type="application/json", HTTP_AUTHORIZATION=WEBHOOK_AUTH
    )
    assert response.status_code == 404
    assert post_to_postmark(client, HTTP_AUTHORIZATION=WEBHOOK_AUTH).status_code == 200


@pytest.mark.django_db
def test_no_inbound_webhook_is_routed_unless_configured(client, settings) -> None:
    settings.SERVICEDESK_INBOUND_ESPS = []
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret"}
    assert post_to_postmark(client, HTTP_AUTHORIZATION=WEBHOOK_AUTH).status_code == 404
    assert not InboundMessage.objects.exists()


@pytest.mark.django_db
def test_a_configured_webhook_refuses_posts_without_its_basic_auth(
    client, postmark_configured
) -> None:
    wrong = "Basic " + base64.b64encode(b"hook:guess").decode()
    assert post_to_postmark(client).status_code == 400
    assert post_to_postmark(client, HTTP_AUTHORIZATION=wrong).status_code == 400
    assert not InboundMessage.objects.exists()
    assert post_to_postmark(client, HTTP_AUTHORIZATION=WEBHOOK_AUTH).status_code == 200
    assert InboundMessage.objects.get().transport == "webhook:postmark"


@pytest.mark.django_db
def test_in_production_a_webhook_without_a_secret_stores_nothing(settings) -> None:
    # The system check stops migrate/check, but gunicorn runs no checks: the view refuses too,
    # with a 500 so that the ESP keeps the message and retries once the secret is set.
    settings.PRODUCTION = True
    settings.SERVICEDESK_INBOUND_ESPS = ["postmark"]
    settings.ANYMAIL = {}
    response = post_to_postmark(Client(raise_request_exception=False))
    assert response.status_code == 500
    assert not InboundMessage.objects.exists()


def test_an_inbound_esp_without_a_webhook_here_is_a_check_error(settings) -> None:
    settings.SERVICEDESK_INBOUND_ESPS = ["sparkpost"]
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret"}
    ids = {message.id for message in run_checks()}
    assert "mailroom.E002" in ids
    settings.SERVICEDESK_INBOUND_ESPS = ["postmark"]
    assert "mailroom.E002" not in {message.id for message in run_checks()}
