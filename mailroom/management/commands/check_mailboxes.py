from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mailroom.graph import GRAPH_ERRORS, GraphError, check_graph_mailbox
from mailroom.transport import IMAP_ERRORS, _imap_error_types, imap_connect
from servicedesk.config import MailboxConfig


class Command(BaseCommand):
    help = (
        "Log in to each configured mailbox (IMAP; for Microsoft Graph: get a token), select "
        "(list) its folder and report what is there."
    )

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
            if mailbox.inbox_method == "microsoft_graph":
                failed |= not self._check_graph(where, mailbox)
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

    def _check_graph(self, where: str, mailbox: MailboxConfig) -> bool:
        assert mailbox.graph is not None
        source = f"{mailbox.user} via {mailbox.graph.graph_endpoint}"
        try:
            found = check_graph_mailbox(mailbox)
        except GRAPH_ERRORS as exc:
            # GraphError texts are redacted already; httpx's name the URL, never a secret.
            text = str(exc) if isinstance(exc, GraphError) else f"{type(exc).__name__}: {exc}"
            text = text.replace(mailbox.graph.client_secret, "[redacted]")
            self.stdout.write(self.style.ERROR(f"{where}: {source} failed: {text}"))
            return False
        self.stdout.write(
            self.style.SUCCESS(
                f"{where}: OK — {source}, token from {mailbox.graph.azure_ad_endpoint}, "
                f"{mailbox.mailbox}: {found}"
            )
        )
        return True
