"""Bench-only middleware: the number of SQL queries (and their time) of each response.

Used by ``bench/scale_settings.py`` (the settings ``bench/scale.py`` gives gunicorn); the
product's settings never list it. ``X-Bench-Queries`` and ``X-Bench-Query-Ms`` are added to
every response, counted with ``connection.execute_wrapper`` around the whole request
(sessions, authentication and the statement timeout included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponse


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool,
                 context: dict[str, Any]) -> Any:  # fmt: skip
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            self.seconds += time.perf_counter() - started


class QueryCountMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        counter = _Counter()
        with ExitStack() as stack:
            for connection in connections.all():
                stack.enter_context(connection.execute_wrapper(counter))
            response = self.get_response(request)
        response["X-Bench-Queries"] = str(counter.count)
        response["X-Bench-Query-Ms"] = f"{counter.seconds * 1000:.1f}"
        return response
