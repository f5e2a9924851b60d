"""Where mail comes from. Every transport stores raw bytes in the ledger first.

- IMAP (``poll_mailbox``): IDLE for push, a fresh search on every wake-up and on every
  ``idle_timeout`` as the polling fallback; ``BODY.PEEK[]`` so nothing is marked read before our
  commit; flags (``\\Seen``, ``\\Deleted``, EXPUNGE) only after it.
- Microsoft Graph (``poll_mailbox`` too, ``graph.GraphPoller``): the same loop, lock and health
  record; a pass every ``poll_interval``, each page committed before it is marked read.
- stdin (``manage.py receive_email``), SMTP/LMTP (``manage.py smtpd``) and ESP webhooks
  (django-anymail's inbound signal) hand bytes to ``inbound_store``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from servicedesk.config import MailboxConfig

from .graph import GraphPoller, LeaseLost
from .ledger import RawEmail, inbound_store, inbound_store_imap_batch
from .locks import Lease, mailbox_lock
from .models import InboundMessage, MailboxState
from .services import mailbox_health_record

log = logging.getLogger(__name__)
# What a dropped connection, a restarting server or a refused login look like.
IMAP_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, socket.timeout)


def imap_connect(mailbox: MailboxConfig, timeout: float = 30):  # type: ignore[no-untyped-def]
    context = ssl.create_default_context()
    if settings.SERVICEDESK_IMAP_INSECURE_TLS:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client = IMAPClient(
        mailbox.host, port=mailbox.port, ssl=mailbox.ssl, ssl_context=context, timeout=timeout
    )
    if mailbox.start_tls:
        client.starttls(context)
    client.login(mailbox.user, mailbox.password)
    return client


def _record_health(name: str, *, ok: bool, error: str = "", fetched: int = 0) -> None:
    mailbox_health_record(name=name, ok=ok, error=error, fetched=fetched)


class ImapPoller:
    """Fetch everything waiting in one mailbox, then IDLE; stop when the lease runs out."""

    def __init__(self, mailbox: MailboxConfig, batch_size: int | None = None) -> None:
        self.mailbox = mailbox
        self.batch_size = batch_size or settings.SERVICEDESK_IMAP_BATCH
        self.client: Any = None
        self.uid_validity = 0

    def connect(self) -> None:
        self.client = imap_connect(self.mailbox)
        status = self.client.select_folder(self.mailbox.mailbox)
        self.uid_validity = int(status[b"UIDVALIDITY"])
        MailboxState.objects.update_or_create(
            name=self.mailbox.name, defaults={"uid_validity": self.uid_validity}
        )

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What a dropped connection, a restarting server or a refused login raise."""
        return IMAP_ERRORS + _imap_error_types()

    def describe(self, exc: BaseException) -> str:
        # Nothing secret here: the error names host and mailbox, never the password.
        return f"{type(exc).__name__}: {exc}"

    def reset(self) -> None:
        """Forget a connection that failed (no LOGOUT: it is gone)."""
        self.client = None

    def wait(self, remaining: float) -> None:
        # An EXISTS sent just before the server acknowledged IDLE is consumed by the client
        # library, not reported by idle_check: a short re-check (SEARCH, then IDLE again)
        # bounds how long such a message can wait.
        self.idle_once(min(self.mailbox.idle_timeout, remaining, settings.SERVICEDESK_IMAP_RECHECK))

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:  # the connection may be gone already; nothing to save
                log.debug("IMAP logout failed", exc_info=True)
            self.client = None

    def fetch_new(self) -> int:
        """Store every waiting message; return how many new rows were stored."""
        criteria = ["UNDELETED"] if self.mailbox.delete_after_delivery else ["UNSEEN"]
        uids = sorted(self.client.search(criteria))
        stored = 0
        for start in range(0, len(uids), self.batch_size):
            stored += self._fetch_batch(uids[start : start + self.batch_size])
        if uids and self.mailbox.delete_after_delivery and self.mailbox.expunge_deleted:
            self.client.expunge()
        _record_health(self.mailbox.name, ok=True, fetched=stored)
        return stored

    def _fetch_batch(self, uids: list[int]) -> int:
        known = set(
            InboundMessage.objects.filter(
                mailbox=self.mailbox.name, uid_validity=self.uid_validity, uid__in=uids
            ).values_list("uid", flat=True)
        )
        new = [uid for uid in uids if uid not in known]
        stored = 0
        if new:
            response = self.client.fetch(new, ["BODY.PEEK[]"])
            emails = [
                RawEmail(raw=data[b"BODY[]"], uid=uid)
                for uid, data in response.items()
                if b"BODY[]" in data
            ]
            stored = len(
                inbound_store_imap_batch(
                    mailbox=self.mailbox.name, uid_validity=self.uid_validity, emails=emails
                )
            )
        # Only now, with the rows committed, may the server forget the messages.
        flags = [b"\\Seen", b"\\Deleted"] if self.mailbox.delete_after_delivery else [b"\\Seen"]
        self.client.add_flags(uids, flags, silent=True)
        return stored

    def idle_once(self, timeout: float) -> bool:
        """IDLE until new mail (EXISTS) or ``timeout``; True if mail arrived."""
        self.client.idle()
        try:
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                # Dovecot also sends keep-alives ("* OK Still here"): wait for EXISTS.
                responses = self.client.idle_check(timeout=min(remaining, 30))
                if any(r[1] == b"EXISTS" for r in responses if len(r) > 1):
                    return True
            return False
        finally:
            self.client.idle_done()


POLLED_METHODS = ("imap", "microsoft_graph")


def poll_mailbox(
    name: str, *, lease_seconds: float, sleep: Callable[[float], None] = time.sleep
) -> str:
    """One poller's turn at a mailbox: hold the lock, fetch, wait, reconnect with backoff."""
    mailbox = settings.SERVICEDESK_MAILBOXES.get(name)
    if mailbox is None or not mailbox.polled:
        return f"{name}: not a polled mailbox"
    if mailbox.inbox_method not in POLLED_METHODS:
        return f"{name}: inbox_method {mailbox.inbox_method} is not supported"
    longest_wait = mailbox.graph.poll_interval if mailbox.graph else mailbox.idle_timeout
    ttl = settings.SERVICEDESK_IMAP_LOCK_TTL or int(longest_wait + 60)
    with mailbox_lock(name, ttl=ttl) as lease:
        if lease is None:
            return f"{name}: another worker is polling it"
        return _poll_with_lease(mailbox, lease, lease_seconds, sleep)


def _poller(
    mailbox: MailboxConfig, lease: Lease, deadline: float, sleep: Callable[[float], None]
) -> ImapPoller | GraphPoller:
    if mailbox.inbox_method == "microsoft_graph":
        return GraphPoller(mailbox, lease=lease, deadline=deadline, sleep=sleep)
    return ImapPoller(mailbox)


def _poll_with_lease(
    mailbox: MailboxConfig, lease: Lease, lease_seconds: float, sleep: Callable[[float], None]
) -> str:
    deadline = time.monotonic() + lease_seconds
    poller = _poller(mailbox, lease, deadline, sleep)
    failures, fetched = 0, 0
    try:
        while time.monotonic() < deadline:
            if not lease.renew():
                return f"{mailbox.name}: lost the poller lock"
            try:
                if poller.client is None:
                    poller.connect()
                # Mail that arrived while we fetched raises no EXISTS once we IDLE (nor waits
                # for the next Graph pass): fetch until nothing new is found, then wait.
                while (batch := poller.fetch_new()) and time.monotonic() < deadline:
                    fetched += batch
                failures = 0
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    poller.wait(remaining)
            except LeaseLost:
                return f"{mailbox.name}: lost the poller lock"
            except poller.errors as exc:
                failures += 1
                poller.reset()
                error = poller.describe(exc)
                _record_health(mailbox.name, ok=False, error=error)
                log.warning("mailbox %s: %s (retry %d)", mailbox.name, error, failures)
                # A server that said how long to wait (Retry-After) is not asked sooner.
                backoff = max(min(2**failures, 60), getattr(exc, "retry_after", 0))
                sleep(min(backoff, max(deadline - time.monotonic(), 0)))
    finally:
        poller.close()
    return f"{mailbox.name}: fetched {fetched}"


def _imap_error_types() -> tuple[type[BaseException], ...]:
    return (IMAPClientError,)


def store_from_stdin(raw: bytes, *, mailbox: str = "") -> InboundMessage:
    return inbound_store(raw=raw, transport="stdin", mailbox=mailbox)


def store_from_webhook(raw: bytes, *, esp: str) -> InboundMessage:
    return inbound_store(raw=raw, transport=f"webhook:{esp}")


def anymail_inbound_received(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """django-anymail's inbound signal: the ESP's message as raw MIME into the ledger.

    If storing fails the exception propagates, anymail answers 500 and the ESP retries later.
    """
    message = event.message
    raw = message.as_bytes() if message is not None else b""
    with transaction.atomic():
        store_from_webhook(raw, esp=esp_name.lower().replace(" ", "_"))
