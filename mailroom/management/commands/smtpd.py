"""A small SMTP (or LMTP) intake on 127.0.0.1 that feeds the inbound ledger.

    manage.py smtpd [--port 2525] [--lmtp]

Every accepted message is committed to the ledger before the 250 reply, so a client that got
250 can forget it. A database error answers 451 (try again later). Messages over twice the
configured size limit are refused with 552; those between the limit and twice it are accepted
and recorded as rejected, so the sender gets our notice.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError

from mailroom.ledger import inbound_store

log = logging.getLogger(__name__)


class IntakeHandler:
    def __init__(self, transport: str) -> None:
        self.transport = transport

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        raw = envelope.original_content or b""
        try:
            row = await sync_to_async(inbound_store)(raw=raw, transport=self.transport)
        except DatabaseError:
            log.exception("smtpd: could not store a message")
            return "451 4.3.0 Temporary failure storing the message, try again later"
        return f"250 2.0.0 Stored as inbound #{row.pk}"


class Command(BaseCommand):
    help = "Run an SMTP/LMTP server on 127.0.0.1 that stores incoming mail in the ledger."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.SERVICEDESK_SMTPD_PORT)
        parser.add_argument("--lmtp", action="store_true", help="speak LMTP instead of SMTP")

    def handle(self, *args: object, **options: object) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.lmtp import LMTP
        from aiosmtpd.smtp import SMTP

        lmtp = bool(options["lmtp"])
        handler = IntakeHandler("lmtp" if lmtp else "smtp")
        limit = settings.SERVICEDESK_MAX_EMAIL_SIZE * 2

        class IntakeController(Controller):
            def factory(self):  # type: ignore[no-untyped-def]
                protocol = LMTP if lmtp else SMTP
                return protocol(self.handler, data_size_limit=limit, enable_SMTPUTF8=True)

        controller = IntakeController(handler, hostname=str(options["host"]), port=options["port"])
        controller.start()
        self.stdout.write(
            f"{'LMTP' if lmtp else 'SMTP'} intake listening on {options['host']}:{options['port']}"
        )
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            loop.run_until_complete(stop.wait())
        finally:
            controller.stop()
            loop.close()
