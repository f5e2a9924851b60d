"""Queueing tasks by name.

A service that queues work (an email to send, an inbound email to process) must not import the
tasks module whose tasks call that service back: that is an import cycle. Services queue here,
by the task's dotted name, which is imported when first queued; tasks import services.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.utils.module_loading import import_string


@cache
def _task(name: str) -> Any:
    return import_string(name)


def enqueue(task: str, *args: object, countdown: float = 0) -> None:
    """Queue ``task`` (its dotted name) with ``args``, optionally ``countdown`` seconds later,
    exactly as ``task.apply_async`` would (the current app, its routes, eager mode)."""
    _task(task).apply_async(args=args, countdown=countdown or None)
