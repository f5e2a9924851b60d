"""Read one email from standard input into the ledger (an MTA's pipe transport, operators).

    manage.py receive_email [--mailbox service_desk_email] [--now] < message.eml

Exit status follows sysexits(3), which MTAs understand: 0 stored, 65 (EX_DATAERR) nothing on
stdin, 75 (EX_TEMPFAIL) the database cannot take it now — the MTA keeps the mail and retries.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from mailroom.ledger import inbound_claim, inbound_process
from mailroom.transport import store_from_stdin

EX_DATAERR, EX_TEMPFAIL = 65, 75


class Command(BaseCommand):
    help = "Store an email read from standard input and queue it (or process it with --now)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--mailbox", default="", help="mailbox it arrived at (for the record)")
        parser.add_argument(
            "--now", action="store_true", help="process it in this process, not by the worker"
        )

    def handle(self, *args: object, **options: object) -> None:
        raw = sys.stdin.buffer.read()
        if not raw:
            self.stderr.write("receive_email: nothing on standard input")
            sys.exit(EX_DATAERR)
        try:
            row = store_from_stdin(raw, mailbox=str(options["mailbox"]))
        except DatabaseError as exc:
            self.stderr.write(f"receive_email: cannot store the message now: {exc}")
            sys.exit(EX_TEMPFAIL)
        if options["now"]:
            claimed, token = inbound_claim([row.pk])
            if not claimed:
                raise CommandError(f"inbound #{row.pk} was taken by a worker first")
            outcome = inbound_process(row.pk, token)
            row.refresh_from_db()
            self.stdout.write(
                f"inbound #{row.pk}: {outcome}{' — ' + row.reason if row.reason else ''}"
            )
        else:
            self.stdout.write(f"inbound #{row.pk}: stored, queued for processing")
