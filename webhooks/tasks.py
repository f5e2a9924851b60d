from __future__ import annotations

from celery import shared_task

from .services import deliveries_claim, deliveries_send, deliveries_sweep


@shared_task(ignore_result=True)
def send_deliveries(ids: list[int]) -> None:
    claimed, token = deliveries_claim(ids)
    if claimed:
        deliveries_send(claimed, token)


@shared_task(ignore_result=True)
def sweep_deliveries() -> int:
    return deliveries_sweep()
