from __future__ import annotations

from celery import shared_task

from .outbox import outbound_claim, outbound_send, outbound_sweep


@shared_task(ignore_result=True)
def send_outbound_emails(ids: list[int]) -> None:
    claimed, token = outbound_claim(ids)
    if claimed:
        outbound_send(claimed, token)


@shared_task(ignore_result=True)
def sweep_outbound() -> int:
    return outbound_sweep()


@shared_task(ignore_result=True)
def apply_retention() -> dict[str, int]:
    """Beat, daily: the content of old finished emails and webhook requests is removed."""
    from servicedesk.retention import apply_retention

    return apply_retention()


@shared_task(ignore_result=True)
def wake_snoozed_issues() -> int:
    from .services import issues_wake

    return issues_wake()
