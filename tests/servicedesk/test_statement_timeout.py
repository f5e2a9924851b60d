"""Web requests run under SERVICEDESK_DB_STATEMENT_TIMEOUT_MS on PostgreSQL: a statement over it
is cancelled in the database and the page answers 503, while code outside requests (workers,
beat, migrations) keeps no limit."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = [pytest.mark.urls("tests.servicedesk.slow_urls")]


def _session_limit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return str(cursor.fetchone()[0])


@pytest.fixture
def limited(settings, transactional_db) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False
    settings.SERVICEDESK_DB_STATEMENT_TIMEOUT_MS = 100


def test_a_statement_over_the_limit_is_cancelled_and_the_page_says_so(client, limited) -> None:
    response = client.get("/slow/", {"seconds": "5"})

    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert response["Cache-Control"] == "private, no-store"
    page = response.content.decode()
    assert "<h1>This took too long</h1>" in page
    assert "{%" not in page
    # The same connection serves the next request normally.
    assert client.get("/limit/").content == b"100ms"


def test_the_limit_holds_during_requests_only(client, limited) -> None:
    before = _session_limit()
    assert before != "100ms"
    assert client.get("/limit/").content == b"100ms"
    assert _session_limit() == before  # taken off after the response
    # Outside a request (as in a worker) the same statement runs to its end.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.3)")
    response = client.get("/slow/", {"seconds": "0.01"})
    assert response.status_code == 200
    assert response.content == b"done"


def test_zero_means_no_limit(client, limited, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_DB_STATEMENT_TIMEOUT_MS = 0
    assert client.get("/limit/").content.decode() == _session_limit()
    assert client.get("/slow/", {"seconds": "0.3"}).status_code == 200


def test_web_requests_are_limited_by_default(settings) -> None:  # type: ignore[no-untyped-def]
    assert settings.SERVICEDESK_DB_STATEMENT_TIMEOUT_MS == 30_000
    assert "servicedesk.statement_timeout.StatementTimeoutMiddleware" in settings.MIDDLEWARE
