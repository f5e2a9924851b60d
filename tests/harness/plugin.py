"""pytest plugin: real services for the test suite.

Loaded with ``-p tests.harness.plugin`` (see pyproject.toml) so that it runs before
pytest-django configures Django: throwaway PostgreSQL and Redis are started first and the
suite's settings point at them. Dovecot, the SMTP server, the Celery worker and Chromium start
on first use, once per session.

When ``CI`` is set, a service that cannot start fails the tests that need it; elsewhere those
tests are skipped with the reason, so a laptop without Dovecot can still run the rest.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .fake_graph import FakeGraphServer
from .services import (
    CeleryWorker,
    DovecotServer,
    PostgresServer,
    RedisServer,
    ServiceUnavailable,
    SilentServer,
    SmtpServer,
    SubmissionServer,
    TestCA,
)

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", "artifacts")).resolve()
# Variables from the developer's shell that would make the suite depend on their machine.
_SCRUBBED_PREFIXES = ("EMAIL_", "ANYMAIL_", "SERVICEDESK_", "DATABASE_", "REDIS_", "CELERY_")


class Harness:
    """Everything started for this test session, stopped in reverse order at the end."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="servicedesk-test-"))
        # Daemons drop to their own users (postgres, mail): they must be able to enter.
        self.base.chmod(0o755)
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.ca: TestCA | None = None
        self._lazy: dict[str, object] = {}
        self.keep_files = False
        self._stoppers: list[Callable[[], None]] = []

    def start_core(self) -> None:
        self.postgres = PostgresServer(self.base / "postgres").start()
        self._stoppers.append(self.postgres.stop)
        self.redis = RedisServer(self.base / "redis").start()
        self._stoppers.append(self.redis.stop)
        self.ca = TestCA(self.base)

    def lazy(
        self, name: str, start: Callable[[], object], stop: Callable[[object], None]
    ) -> object:
        """Start a service on first use; a failure is remembered and re-raised on every use."""
        if name not in self._lazy:
            try:
                self._lazy[name] = start()
            except (ServiceUnavailable, OSError) as exc:
                self._lazy[name] = ServiceUnavailable(f"{name}: {exc}")
            else:
                service = self._lazy[name]
                self._stoppers.append(lambda: stop(service))
        value = self._lazy[name]
        if isinstance(value, ServiceUnavailable):
            raise value
        return value

    def stop(self) -> None:
        """Stop everything (idempotent: also registered with atexit)."""
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()
        if not self.keep_files:
            shutil.rmtree(self.base, ignore_errors=True)


_harness: Harness | None = None


def harness() -> Harness:
    assert _harness is not None, "the service harness was not started"
    return _harness


def unavailable(reason: str) -> None:
    """A missing service: a failure in CI, a skip elsewhere (with the reason either way)."""
    if IN_CI:
        pytest.fail(f"required service unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"service unavailable: {reason}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--keep-services-dir",
        action="store_true",
        help="keep the test services' directory (logs, data) after the run",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    global _harness
    if {"--help", "-h", "--version", "-V"} & set(args):
        return
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES):
            del os.environ[name]
    _harness = Harness()
    atexit.register(_harness.stop)
    try:
        _harness.start_core()
    except (ServiceUnavailable, OSError, TimeoutError) as exc:
        _harness.stop()
        raise pytest.UsageError(
            f"cannot start the test services: {exc}\n"
            "Install them with scripts/install-system-deps.sh (as root), or run `make test`."
        ) from exc
    assert _harness.postgres is not None
    assert _harness.redis is not None
    os.environ.update(
        DATABASE_URL=_harness.postgres.url,
        REDIS_URL=_harness.redis.url,
        # The Django cache gets its own Redis database: tests may flush it without touching
        # the Celery broker's queues in database 0.
        REDIS_CACHE_URL=_harness.redis.url.rsplit("/", 1)[0] + "/1",
        SECRET_KEY="insecure-test-only-secret-key-0123456789abcdef",
        SERVICEDESK_ENV="development",
        SERVICEDESK_VAR_DIR=str(_harness.base / "var"),
        SITE_URL="http://servicedesk.test",
        # The worker runs for the whole session, beside tests that leave inbound email queued
        # on purpose: the team's notifications do not wait for it (see notifications/tasks.py).
        SERVICEDESK_TEAM_NOTIFICATIONS_YIELD="0",
        # Webhook receivers in tests listen on 127.0.0.1 (refused in production unless allowed),
        # and a failed delivery is retried after 1 s instead of a minute.
        SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE="127.0.0.1/32",
        SERVICEDESK_WEBHOOKS_RETRY_DELAY="1",
        # Playwright's sync API runs an event loop in the test thread; the ORM calls we make
        # beside it are ordinary synchronous calls.
        DJANGO_ALLOW_ASYNC_UNSAFE="true",
        # Projects' own SMTP servers in tests have certificates from the session's CA; every
        # worker started later inherits this.
        SERVICEDESK_CUSTOM_SMTP_CA_FILE=str(_harness.ca.path) if _harness.ca else "",
        # A project's server that never answers: a test waits this long, not 30 s.
        SERVICEDESK_CUSTOM_SMTP_TIMEOUT="3",
    )


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # The translation catalogues, as `make run` compiles them (the web and worker read them).
    from scripts.compilemessages import compile_all

    compile_all()

    if settings.configured:
        # Fast hashing: tests create many users; production keeps Django's default.
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _harness is not None:
        _harness.keep_files = bool(config.getoption("--keep-services-dir", default=False))
        if _harness.keep_files:
            print(f"\ntest services' files kept in {_harness.base}")
        _harness.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    if _harness is None or _harness.postgres is None or _harness.redis is None:
        return []
    return [
        f"services: PostgreSQL 127.0.0.1:{_harness.postgres.port}, "
        f"Redis 127.0.0.1:{_harness.redis.port}, files in {_harness.base} "
        f"({'CI: missing services fail' if IN_CI else 'missing services skip'})"
    ]


# --- Fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    assert harness().postgres is not None
    return harness().postgres  # type: ignore[return-value]


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    assert harness().redis is not None
    return harness().redis  # type: ignore[return-value]


@pytest.fixture
def redis_cache_flushed(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A clean Django cache (rate-limit counters, locks) for the test."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def smtp_server() -> SmtpServer:
    try:
        return harness().lazy("smtp", lambda: SmtpServer().start(), lambda s: s.stop())  # type: ignore[return-value]
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture
def smtp(smtp_server: SmtpServer, settings) -> Iterator[SmtpServer]:  # type: ignore[no-untyped-def]
    """The SMTP server, emptied, with Django's SMTP backend pointed at it."""
    if not smtp_server.running:
        smtp_server.start()
    smtp_server.clear()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield smtp_server
    if not smtp_server.running:  # a test that simulated an outage leaves it running again
        smtp_server.start()
    smtp_server.clear()  # and one that made it refuse recipients leaves it accepting again


@pytest.fixture
def submission_server() -> Iterator[SubmissionServer]:
    """A customer's own SMTP server (STARTTLS + AUTH, certificate from the session's CA),
    stopped when the test ends."""
    ca = harness().ca
    assert ca is not None
    server = SubmissionServer(ca).start()
    yield server
    server.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A port that accepts connections and never answers."""
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_graph_server() -> FakeGraphServer:
    return harness().lazy(  # type: ignore[return-value]
        "fake-graph", lambda: FakeGraphServer().start(), lambda s: s.stop()
    )


@pytest.fixture
def fake_graph(fake_graph_server: FakeGraphServer) -> Iterator[FakeGraphServer]:
    """The fake Microsoft Graph (and token endpoint), emptied, its faults cleared."""
    if not fake_graph_server.running:
        fake_graph_server.start()
    fake_graph_server.reset()
    yield fake_graph_server
    if not fake_graph_server.running:  # a test that simulated an outage leaves it running again
        fake_graph_server.start()
    fake_graph_server.reset()


@pytest.fixture(scope="session")
def dovecot() -> DovecotServer:
    try:
        return harness().lazy(  # type: ignore[return-value]
            "dovecot",
            lambda: DovecotServer(harness().base / "dovecot").start(),
            lambda s: s.stop(),
        )
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture
def imap_mailbox(dovecot: DovecotServer) -> DovecotServer:
    """Dovecot with the test accounts' INBOXes emptied before the test."""
    for user in dovecot.users:
        with dovecot.imap(user) as client:
            client.select_folder("INBOX")
            messages = client.search("ALL")
            if messages:
                client.delete_messages(messages)
                client.expunge()
    return dovecot


def _worker_env(db_name: str, smtp_server: SmtpServer) -> dict[str, str]:
    h = harness()
    assert h.postgres is not None
    return {
        "DATABASE_URL": h.postgres.url.rsplit("/", 1)[0] + f"/{db_name}",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, smtp_server) -> CeleryWorker:  # type: ignore[no-untyped-def]
    """A real Celery worker process on the test database, fed through the test Redis.

    Tests that use it must be transactional (``@pytest.mark.django_db(transaction=True)``):
    the worker is another process and sees only committed rows.
    """
    from django.db import connection

    env = _worker_env(connection.settings_dict["NAME"], smtp_server)
    try:
        return harness().lazy(  # type: ignore[return-value]
            "celery-worker",
            lambda: CeleryWorker(harness().base / "celery", env, name="session-worker").start(),
            lambda w: w.stop(),
        )
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture
def worker_factory(django_db_setup, smtp_server) -> Iterator[Callable[..., CeleryWorker]]:  # type: ignore[no-untyped-def]
    """Start extra workers (to kill -9, to race); all are stopped when the test ends."""
    from django.db import connection

    started: list[CeleryWorker] = []

    def start(
        name: str = "extra", env: dict[str, str] | None = None, **kwargs: object
    ) -> CeleryWorker:
        full_env = {**_worker_env(connection.settings_dict["NAME"], smtp_server), **(env or {})}
        worker = CeleryWorker(harness().base / "celery", full_env, name=name, **kwargs)  # type: ignore[arg-type]
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()


def chromium_launch_args(defaults: dict) -> dict:  # type: ignore[type-arg]
    """Debian's Chromium, never a downloaded browser (``playwright install`` is not used).

    Used by ``browser_type_launch_args`` in tests/conftest.py: a conftest fixture is the one
    that reliably overrides pytest-playwright's own.
    """
    if not os.path.exists(CHROMIUM):
        unavailable(f"Chromium not found at {CHROMIUM}")
    return {**defaults, "executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """Save a full-page screenshot under artifacts/screenshots/ as a test artifact."""

    def take(page, name: str) -> Path:  # type: ignore[no-untyped-def]
        folder = ARTIFACTS / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{request.node.name}--{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
