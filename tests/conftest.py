"""Personas and the project they work on: acme/game with Service Desk on.

alice is Owner, mia Maintainer, dan Developer, bob Reporter, carol Guest, dave an outsider.
"""

from __future__ import annotations

import contextlib

import pytest

from accounts.models import User
from projects.models import Project, Role

from .factories import GroupFactory, ProjectFactory, UserFactory, member
from .harness.plugin import chromium_launch_args


@pytest.fixture
def project(db) -> Project:  # type: ignore[no-untyped-def]
    group = GroupFactory(path="acme", name="ACME")
    return ProjectFactory(group=group, path="game", name="Game", service_desk_enabled=True)


@pytest.fixture
def owner(project: Project) -> User:
    return member(project, Role.OWNER, "alice")


@pytest.fixture
def maintainer(project: Project) -> User:
    return member(project, Role.MAINTAINER, "mia")


@pytest.fixture
def developer(project: Project) -> User:
    return member(project, Role.DEVELOPER, "dan")


@pytest.fixture
def reporter(project: Project) -> User:
    return member(project, Role.REPORTER, "bob")


@pytest.fixture
def guest(project: Project) -> User:
    return member(project, Role.GUEST, "carol")


@pytest.fixture
def outsider(db) -> User:  # type: ignore[no-untyped-def]
    return UserFactory(username="dave")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:  # type: ignore[type-arg]
    return chromium_launch_args(browser_type_launch_args)


@pytest.fixture
def rate_window_frozen(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Rate limits count in fixed windows of time.time(): pin the clock they read, so a test
    never straddles two windows (instead of waiting for the next one to start)."""
    import time
    import types

    import servicedesk.ratelimit

    now = time.time()
    monkeypatch.setattr(servicedesk.ratelimit, "time", types.SimpleNamespace(time=lambda: now))


@pytest.fixture(autouse=True)
def language_reset():  # type: ignore[no-untyped-def]
    """A request leaves its language active in the thread (LocaleMiddleware activates it and
    nothing deactivates it): the next test must not inherit a German session's language."""
    yield
    from django.utils import translation

    translation.deactivate()


@pytest.fixture(autouse=True)
def worker_idle_before_flush(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A transactional test ends when the real Celery worker (once started, it runs for the
    session) has nothing left to do for it: the database is flushed (TRUNCATE) after the test,
    and a task still running then can deadlock with the flush — every commit of a test queues
    work (the team's notifications, emails). Bounded: a test that leaves email unsendable on
    purpose waits 10 s at most."""
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or bool(
        {"transactional_db", "live_server", "celery_worker", "worker_factory"}
        & set(request.fixturenames)
    )
    if not transactional:
        yield
        return
    request.getfixturevalue("transactional_db")  # torn down (flushed) after this fixture
    yield
    if not _worker_running(request):
        return
    from django.db.models import Q

    from issues.models import OutboundEmail
    from notifications.models import Event
    from tests.harness.services import wait_until
    from webhooks.models import WebhookDelivery

    busy = Q(status="sending") | Q(status="pending", next_attempt_at=None)
    # Left pending on purpose (an outage): nothing more to wait for after the bound.
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: (
                not Event.objects.filter(delivered_at=None).exists()
                and not OutboundEmail.objects.filter(busy).exists()
                and not WebhookDelivery.objects.filter(busy).exists()
            ),
            10,
            "the worker to finish the test's work",
        )


def _worker_running(request: pytest.FixtureRequest) -> bool:
    from tests.harness.plugin import harness
    from tests.harness.services import CeleryWorker

    started = isinstance(harness()._lazy.get("celery-worker"), CeleryWorker)
    return started or "worker_factory" in request.fixturenames
