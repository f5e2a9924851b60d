"""Claiming ledger rows for one worker: the shared step of the inbound and outbound ledgers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone


def claim_due(
    model: type[models.Model], ids: Sequence[int], *, waiting: str, claimed: str
) -> tuple[list[int], uuid.UUID]:
    """Move the rows among ``ids`` that wait and are due to ``claimed``, committed.

    Rows locked by another transaction are skipped, the attempt is counted here (so a row that
    kills its worker is eventually given up), and the token lets only this claim record a result.
    The model needs status, next_attempt_at, claimed_at, claim_token and attempts fields.
    """
    token = uuid.uuid4()
    now = timezone.now()
    rows = model._default_manager
    with transaction.atomic():
        claimable = list(
            rows.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status=waiting)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if claimable:
            rows.filter(pk__in=claimable).update(
                status=claimed, claimed_at=now, claim_token=token, attempts=F("attempts") + 1
            )
    return claimable, token
