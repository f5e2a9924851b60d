"""Celery tasks: thin wrappers that take ids, claim rows and call the mailroom's services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from .ledger import inbound_claim, inbound_process_batch, inbound_sweep
from .services import worker_heartbeat_record
from .transport import poll_mailbox as poll


@shared_task(ignore_result=True)
def process_inbound(ids: list[int]) -> None:
    claimed, token = inbound_claim(ids)
    if claimed:
        inbound_process_batch(claimed, token)


@shared_task(ignore_result=True)
def sweep_inbound() -> dict[str, int]:
    return inbound_sweep()


@shared_task(bind=True, ignore_result=True)
def record_worker_heartbeat(self) -> None:  # type: ignore[no-untyped-def]
    worker_heartbeat_record(hostname=self.request.hostname or "unknown")


@shared_task(ignore_result=True)
def poll_mailbox(name: str) -> str:
    return poll(name, lease_seconds=settings.SERVICEDESK_IMAP_LEASE)
