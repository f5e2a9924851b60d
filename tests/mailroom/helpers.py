"""Deliver emails through the real pipeline in-process (store → claim → process)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from mailroom.ledger import inbound_claim, inbound_process, inbound_process_batch, inbound_store
from mailroom.models import InboundMessage
from servicedesk.config import MailboxConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"

INCOMING = MailboxConfig(
    name="incoming_email",
    enabled=True,
    address="incoming+%{key}@appmail.adventuretime.ooo",
    inbox_method="none",
)
ALIAS = MailboxConfig(
    name="service_desk_email",
    enabled=True,
    address="support+%{key}@example.com",
    inbox_method="none",
)


def deliver(raw: bytes, transport: str = "test") -> InboundMessage:
    """Store and process one email now, as a worker would; return the finished ledger row."""
    row = inbound_store(raw=raw, transport=transport, enqueue=False)
    claimed, token = inbound_claim([row.pk])
    assert claimed == [row.pk]
    inbound_process(row.pk, token)
    row.refresh_from_db()
    return row


def make_email(
    *,
    to: str,
    subject: str = "Help please",
    body: str = "My game does not start.",
    sender: str = "Jake <jake@customer.example>",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="customer.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def deliver_together(raws: list[bytes]) -> list[InboundMessage]:
    """Store several emails and process them as one worker's batch; return the finished rows."""
    ids = [inbound_store(raw=raw, transport="test", enqueue=False).pk for raw in raws]
    claimed, token = inbound_claim(ids)
    assert claimed == ids
    inbound_process_batch(claimed, token)
    return list(InboundMessage.objects.filter(pk__in=ids).order_by("pk"))
