from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from mailroom.models import InboundMessage

from .models import Event
from .services import events_deliver

# An event still pending this long after it was recorded lost its task (a worker died, the
# broker was down at the commit): the sweeper delivers it.
SWEEP_AFTER_SECONDS = 60
# Customers' mail first: while inbound email waits to be processed, the team's notifications
# (a fan-out of one email per person: with 20 watchers, 20 for each new ticket) wait too, in
# steps of YIELD_SECONDS, for at most SERVICEDESK_TEAM_NOTIFICATIONS_YIELD seconds, so that a
# burst of mail is not slowed down by the size of the team.
YIELD_SECONDS = 2


@shared_task(ignore_result=True)
def deliver_events(ids: list[int], waited: int = 0) -> int:
    if not Event.objects.filter(pk__in=ids, delivered_at=None).exists():
        return 0  # delivered already (by the sweeper, or a task run twice)
    if waited < settings.SERVICEDESK_TEAM_NOTIFICATIONS_YIELD and _inbound_waiting():
        deliver_events.apply_async(args=(ids, waited + YIELD_SECONDS), countdown=YIELD_SECONDS)
        return 0
    return events_deliver(ids)


@shared_task(ignore_result=True)
def sweep_events() -> int:
    return events_deliver(older_than=SWEEP_AFTER_SECONDS)


def _inbound_waiting() -> bool:
    """Inbound email being processed or ready to be (not a reply waiting for its original, nor
    one waiting to be retried)."""
    status = InboundMessage.Status
    ready = Q(next_attempt_at=None) | Q(next_attempt_at__lte=timezone.now())
    return InboundMessage.objects.filter(
        Q(status=status.PROCESSING) | (Q(status=status.QUEUED, waiting_for=None) & ready)
    ).exists()
