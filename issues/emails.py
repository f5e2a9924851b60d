"""Outbound Service Desk emails.

THE HOOK for the outbound mail work: the mailroom calls ``service_desk_issue_created`` inside
the transaction that created an issue from email. Sending *thank you* (to the requester) and
*new participant* (to Cc'd addresses) is not built yet: it arrives with the outbox ledger, which
will write the emails to send right here, in the same transaction as their cause.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models import EmailParticipant, Issue


def service_desk_issue_created(
    *, issue: Issue, requester: EmailParticipant | None, cc: Sequence[EmailParticipant]
) -> None:
    """Called in the issue's creating transaction. Sends nothing yet (outbound mail pending)."""
