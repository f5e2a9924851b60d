"""The Celery app. Configuration comes from Django settings (the ``CELERY_`` prefix)."""

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")

app = Celery("servicedesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _connections_checked(task: Any = None, **_kwargs: Any) -> None:
    """Before each task, as Django before each request: a database connection that failed or
    is older than its CONN_MAX_AGE is closed (the next query opens a new one); the others are
    reused (CELERY_DB_REUSE_MAX). Not for a task run eagerly, inside its caller's transaction."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
