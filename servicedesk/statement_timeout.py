"""Web requests run under a PostgreSQL ``statement_timeout`` (SERVICEDESK_DB_STATEMENT_TIMEOUT_MS).

gunicorn gives up on a request after its own timeout, but the query it was waiting for goes
on in the database until it ends: a search once ran 120 s there. The middleware sets the
limit on the request's connection before anything else touches it and takes it off after the
response, so only web requests are limited: Celery workers, beat and management commands
(``migrate`` building indexes) never pass through it and keep the server's default.

A statement cut by the limit raises ``QueryCanceled``; the request then answers 503 with a
page that says the request took too long (and ``Retry-After``), not a stack of 500s.

The two statements go through the driver's cursor, not Django's: they are the connection's
settings, not the page's queries (the query counts asserted by the tests stay the page's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

# The cancelled statement's exception, whatever wraps it: Django re-raises psycopg's
# QueryCanceled as django.db.OperationalError with the original as its __cause__.
_CANCELED_SQLSTATE = "57014"


def _set_timeout(milliseconds: int) -> None:
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{milliseconds}ms"])


def _reset_timeout() -> None:
    raw = connection.connection
    if raw is None or raw.closed:
        return
    try:
        with raw.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    except Exception:  # a connection in a failed state: drop it, the next request opens another
        logger.warning("could not reset statement_timeout; closing the connection", exc_info=True)
        connection.close()


def is_statement_timeout(exception: BaseException) -> bool:
    """Whether ``exception`` (or what it wraps) is a statement cancelled by the time limit."""
    seen: BaseException | None = exception
    while seen is not None:
        if getattr(seen, "sqlstate", None) == _CANCELED_SQLSTATE:
            return True
        seen = seen.__cause__
    return False


class StatementTimeoutMiddleware:
    """``statement_timeout`` for the duration of each request on PostgreSQL; a cancelled
    statement answers 503 with the "took too long" page. 0 turns it off."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        milliseconds = settings.SERVICEDESK_DB_STATEMENT_TIMEOUT_MS
        if not milliseconds or connection.vendor != "postgresql":
            return self.get_response(request)
        _set_timeout(milliseconds)
        try:
            return self.get_response(request)
        finally:
            _reset_timeout()

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_statement_timeout(exception):
            return None
        logger.warning(
            "statement_timeout (%s ms) cancelled a query of %s %s",
            settings.SERVICEDESK_DB_STATEMENT_TIMEOUT_MS,
            request.method,
            request.path,
        )
        response = HttpResponse(render_to_string("503_too_slow.html"), status=503)
        response["Retry-After"] = "60"
        return response
