from __future__ import annotations

from celery import shared_task

from .services import clocks_sweep


@shared_task(ignore_result=True)
def sweep_response_clocks() -> tuple[int, int]:
    return clocks_sweep()
