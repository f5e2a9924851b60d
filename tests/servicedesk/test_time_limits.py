"""Every Celery task has time limits: a soft one it can record, a hard one that ends it."""

from __future__ import annotations

from django.conf import settings

from servicedesk.celery import app

OUR_TASKS = ("mailroom.", "issues.", "webhooks.")


def our_tasks() -> dict[str, object]:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.startswith(OUR_TASKS)}


def test_every_task_has_a_soft_limit_before_its_hard_limit() -> None:
    tasks = our_tasks()
    assert "mailroom.tasks.process_inbound" in tasks
    for name, task in tasks.items():
        soft, hard = task.soft_time_limit, task.time_limit  # type: ignore[attr-defined]
        assert soft, name
        assert hard, name
        assert soft < hard, name


def test_processing_ends_before_the_sweeper_hands_its_emails_out_again() -> None:
    task = our_tasks()["mailroom.tasks.process_inbound"]
    assert task.time_limit <= settings.SERVICEDESK_INBOUND_STUCK_AFTER  # type: ignore[attr-defined]


def test_a_mailbox_poller_may_run_for_its_lease() -> None:
    task = our_tasks()["mailroom.tasks.poll_mailbox"]
    assert task.soft_time_limit > settings.SERVICEDESK_IMAP_LEASE  # type: ignore[attr-defined]


def test_a_sender_ends_before_its_emails_are_handed_out_again() -> None:
    task = our_tasks()["issues.tasks.send_outbound_emails"]
    assert task.time_limit < settings.SERVICEDESK_OUTBOUND_STUCK_AFTER  # type: ignore[attr-defined]


def test_a_webhook_sender_ends_before_its_deliveries_are_handed_out_again() -> None:
    from webhooks.services import TASK_BATCH

    task = our_tasks()["webhooks.tasks.send_deliveries"]
    assert task.time_limit < settings.SERVICEDESK_WEBHOOKS_STUCK_AFTER  # type: ignore[attr-defined]
    # Each request may wait the timeout to connect, to send, to read and for the excerpt.
    worst = TASK_BATCH * 4 * settings.SERVICEDESK_WEBHOOKS_TIMEOUT
    assert worst < task.soft_time_limit  # type: ignore[attr-defined]
