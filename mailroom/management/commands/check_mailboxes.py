from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mailroom.transport import IMAP_ERRORS, _imap_error_types, imap_connect


class Command(BaseCommand):
    help = "Log in to each configured mailbox, select it and report what is there."

    def handle(self, *args: object, **options: object) -> None:
        mailboxes = settings.SERVICEDESK_MAILBOXES
        if not mailboxes:
            raise CommandError("No mailbox configured: set SERVICEDESK_CONFIG (see README).")
        failed = False
        for name, mailbox in mailboxes.items():
            where = f"{name} ({mailbox.address or 'no address'})"
            if not mailbox.enabled:
                self.stdout.write(f"{where}: disabled")
                continue
            if mailbox.inbox_method == "none":
                self.stdout.write(f"{where}: address only, mail arrives by pipe/SMTP/webhook")
                continue
            if mailbox.inbox_method != "imap":
                self.stdout.write(f"{where}: inbox_method {mailbox.inbox_method} not supported yet")
                failed = True
                continue
            try:
                client = imap_connect(mailbox, timeout=15)
                status = client.select_folder(mailbox.mailbox, readonly=True)
                client.logout()
            except IMAP_ERRORS + _imap_error_types() as exc:
                self.stdout.write(
                    self.style.ERROR(f"{where}: {mailbox.host}:{mailbox.port} failed: {exc}")
                )
                failed = True
                continue
            self.stdout.write(
                self.style.SUCCESS(
                    f"{where}: OK — {mailbox.user}@{mailbox.host}:{mailbox.port} "
                    f"{'ssl' if mailbox.ssl else 'starttls' if mailbox.start_tls else 'plain'}, "
                    f"{mailbox.mailbox}: {status[b'EXISTS']} message(s), "
                    f"UIDVALIDITY {status[b'UIDVALIDITY']}"
                )
            )
        if failed:
            raise CommandError("At least one mailbox failed the check.")
