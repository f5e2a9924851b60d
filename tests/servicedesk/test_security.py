"""Security settings: the Content-Security-Policy and Django's deployment checklist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]


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


def test_check_deploy_is_clean_with_production_settings(tmp_path) -> None:
    scrubbed = ("DATABASE_", "REDIS_", "SERVICEDESK_", "EMAIL_", "SECRET_KEY", "SITE_URL", "DEBUG",
                "DJANGO_ALLOW_ASYNC_UNSAFE")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
    env.update(
        DJANGO_SETTINGS_MODULE="servicedesk.settings",
        SERVICEDESK_ENV="production",
        SERVICEDESK_VAR_DIR=str(tmp_path),
        SECRET_KEY="a-production-secret-" + "x7Qz9#" * 10,
        SITE_URL="https://support.example.com",
        AKISMET_API_KEY="configured",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
