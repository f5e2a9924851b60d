from __future__ import annotations

from celery import shared_task

from .services import worker_heartbeat_record


@shared_task(bind=True, ignore_result=True)
def record_worker_heartbeat(self) -> None:  # type: ignore[no-untyped-def]
    worker_heartbeat_record(hostname=self.request.hostname or "unknown")
