from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _fts_triggers(using: str = "default", **kwargs: Any) -> None:
    """SQLite rebuilds a table to alter it, losing its triggers: put the search index's back
    (issues/fts.py)."""
    from django.db import connections

    from .fts import ensure_triggers

    connection = connections[using]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            ensure_triggers(cursor)


class IssuesConfig(AppConfig):
    name = "issues"
    verbose_name = "Issues"

    def ready(self) -> None:
        post_migrate.connect(_fts_triggers, sender=self)
