"""Email addresses as mailboxes: the one rule for telling two spellings of a mailbox apart."""

from __future__ import annotations

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
