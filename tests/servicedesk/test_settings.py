"""Settings load from the environment: production refuses to start half-configured."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import django; django.setup(); from django.conf import settings; print(repr(({},)))"


def load(expression: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    harness_set = ("SECRET_KEY", "DATABASE_", "REDIS_", "SITE_URL", "SERVICEDESK_", "EMAIL_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(harness_set)}
    clean.update(
        DJANGO_SETTINGS_MODULE="servicedesk.settings", SERVICEDESK_VAR_DIR=str(tmp_path), **env
    )
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(expression)],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def value(result: subprocess.CompletedProcess[str]) -> tuple[object, ...]:
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip())


def test_production_requires_secret_key(tmp_path) -> None:
    result = load(
        "settings.DEBUG", tmp_path, SERVICEDESK_ENV="production", SITE_URL="https://sd.example"
    )
    assert result.returncode != 0
    assert "Set the environment variable SECRET_KEY" in result.stderr


def test_production_requires_site_url(tmp_path) -> None:
    result = load("settings.DEBUG", tmp_path, SERVICEDESK_ENV="production", SECRET_KEY="k" * 50)
    assert "Set the environment variable SITE_URL" in result.stderr


def test_production_settings_are_secure(tmp_path) -> None:
    result = load(
        "settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.ALLOWED_HOSTS",
        tmp_path,
        SERVICEDESK_ENV="production",
        SECRET_KEY="k" * 50,
        SITE_URL="https://sd.example",
    )
    assert value(result) == (False, True, ["sd.example"])


def test_development_generates_and_keeps_a_secret_key(tmp_path) -> None:
    first = load("settings.SECRET_KEY", tmp_path)
    second = load("settings.SECRET_KEY", tmp_path)
    assert value(first) == value(second)
    assert len(value(first)[0]) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_default_database_is_sqlite_under_var_and_url_selects_postgres(tmp_path) -> None:
    sqlite = load(
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['NAME']", tmp_path
    )
    assert value(sqlite) == ("django.db.backends.sqlite3", f"{tmp_path}/servicedesk.sqlite3")
    pg = load(
        "settings.DATABASES['default']['ENGINE']",
        tmp_path,
        DATABASE_URL="postgres://u:p@db.example:5432/sd",
    )
    assert value(pg) == ("django.db.backends.postgresql",)


def test_without_redis_celery_uses_the_filesystem_broker(tmp_path) -> None:
    result = load("settings.CELERY_BROKER_URL", tmp_path)
    assert value(result) == ("filesystem://localhost//",)
    with_redis = load("settings.CELERY_BROKER_URL", tmp_path, REDIS_URL="redis://127.0.0.1:1/0")
    assert value(with_redis) == ("redis://127.0.0.1:1/0",)


def test_bad_mailbox_config_fails_at_start(tmp_path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[incoming_email]\nenabled = true\naddress = "no-key@example.com"\n')
    result = load("1", tmp_path, SERVICEDESK_CONFIG=str(config))
    assert result.returncode != 0
    assert "[incoming_email] address: must be an email address" in result.stderr


def test_anymail_settings_come_from_env_or_files(tmp_path) -> None:
    secret = tmp_path / "mailgun"
    secret.write_text("key-from-file\n")
    result = load(
        "settings.ANYMAIL",
        tmp_path,
        ANYMAIL_MAILGUN_API_KEY_FILE=str(secret),
        ANYMAIL_WEBHOOK_SECRET="user:pass",
    )
    assert value(result) == ({"MAILGUN_API_KEY": "key-from-file", "WEBHOOK_SECRET": "user:pass"},)


def test_default_from_address_is_a_mail_domain(tmp_path) -> None:
    assert value(load("settings.DEFAULT_FROM_EMAIL", tmp_path)) == (
        "support@servicedesk.localhost",
    )
    production = load(
        "settings.DEFAULT_FROM_EMAIL",
        tmp_path,
        SERVICEDESK_ENV="production",
        SECRET_KEY="k" * 50,
        SITE_URL="https://help.acme.example",
    )
    assert value(production) == ("support@help.acme.example",)


def test_no_inbound_webhook_unless_listed(tmp_path) -> None:
    assert value(load("settings.SERVICEDESK_INBOUND_ESPS", tmp_path)) == ([],)
    listed = load(
        "settings.SERVICEDESK_INBOUND_ESPS", tmp_path, SERVICEDESK_INBOUND_ESPS="Postmark, mailgun"
    )
    assert value(listed) == (["postmark", "mailgun"],)


def test_trusted_proxies_are_addresses_or_networks(tmp_path) -> None:
    assert value(load("settings.TRUSTED_PROXIES", tmp_path)) == ([],)
    listed = load(
        "settings.TRUSTED_PROXIES", tmp_path, TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7,2001:db8::/32"
    )
    assert value(listed) == (["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"],)
    bad = load("settings.TRUSTED_PROXIES", tmp_path, TRUSTED_PROXIES="10.0.0.0/8,proxy.internal")
    assert bad.returncode != 0
    assert "TRUSTED_PROXIES must list IP addresses or networks (CIDR), not 'proxy.internal'" in (
        bad.stderr
    )
