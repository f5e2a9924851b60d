"""Email addresses as mailboxes: the one rule for telling two spellings of a mailbox apart."""

from __future__ import annotations

from email.utils import parseaddr

from django.conf import settings

# Providers that ignore dots in the local part (and treat googlemail.com as gmail.com).
_DOTLESS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def normalise_mailbox(address: str) -> str:
    """The mailbox an address delivers to, for counting: ``Jake+1@X``, ``jake+2@x`` and (at
    Gmail) ``j.ake@gmail.com`` are one. Never an address to send to."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return address.strip().lower()
    local = local.split("+", 1)[0] or local
    if domain in _DOTLESS:
        local, domain = local.replace(".", ""), _DOTLESS[domain]
    return f"{local}@{domain}"


def is_our_address(address: str | None) -> bool:
    """Our sending address, a mailbox of ours, or any key address of one: mail to it comes
    back to us, so it is never a participant, never answered, never a requester."""
    if not address:
        return False
    lowered = address.strip().strip("<>").lower()
    if lowered == parseaddr(settings.DEFAULT_FROM_EMAIL)[1].lower():
        return True
    return any(
        lowered == mailbox.base_address.lower() or mailbox.address_regex.match(lowered)
        for mailbox in settings.SERVICEDESK_MAILBOXES.values()
        if mailbox.enabled
    )
