"""Who really sent an email, as far as we can tell: one address per mailbox, and whether our
mail server found the From domain forged.

Anyone can put anyone's address in From. Every automatic answer we send (thank you, new
participant, "[Rejected]") repeats a subject the sender chose, so a forged From would turn the
desk into a relay aimed at the forged address. Two defences live here:

- ``normalise_sender``: ``Jake+1@X``, ``jake+2@x`` and (at Gmail) ``j.ake@gmail.com`` are one
  mailbox, so rate limits count them together;
- ``authentication_failure``: the verdict our receiving server wrote in its
  Authentication-Results header (RFC 8601) — DMARC, else SPF and DKIM aligned with the From
  domain. Only a header from an authserv-id we trust counts, and only the topmost one: a
  receiving server adds its own above everything the sender wrote.
"""

from __future__ import annotations

from collections.abc import Iterable

import authres
from django.conf import settings

from servicedesk.addresses import normalise_mailbox as normalise_sender

__all__ = ["authentication_failure", "normalise_sender", "trusted_authserv_ids"]

# What is read of an Authentication-Results value: real ones are a few hundred bytes, and the
# parser is not linear in nested comments.
MAX_HEADER_LENGTH = 4096
MAX_HEADERS = 10


def trusted_authserv_ids() -> list[str]:
    configured = settings.SERVICEDESK_TRUSTED_AUTHSERV_IDS
    if configured:
        return [name.lower().rstrip(".") for name in configured]
    mailboxes = settings.SERVICEDESK_MAILBOXES.values()
    return sorted({m.address.rpartition("@")[2].lower() for m in mailboxes if "@" in m.address})


def _trusted(authserv_id: str, trusted: Iterable[str]) -> bool:
    name = authserv_id.lower().rstrip(".")
    return any(name == t or name.endswith(f".{t}") for t in trusted)


def _domain(value: str) -> str:
    return value.rpartition("@")[2].strip().lower().rstrip(".")


def authentication_failure(headers: list[str], from_address: str | None) -> str:
    """Why our mail server says the From domain failed authentication, or "" (passed, no
    verdict, no trusted header, or the check is turned off)."""
    if not settings.SERVICEDESK_AUTO_REPLY_NEEDS_AUTH or not from_address:
        return ""
    trusted = trusted_authserv_ids()
    for value in headers[:MAX_HEADERS]:
        try:
            header = authres.AuthenticationResultsHeader.parse(
                "Authentication-Results: " + value[:MAX_HEADER_LENGTH]
            )
        except (authres.AuthResError, RecursionError, ValueError):
            continue  # not a header we can read: not evidence either way
        if _trusted(header.authserv_id or "", trusted):
            return _verdict(header.results, _domain(from_address))
    return ""


def _verdict(results: list[authres.BaseAuthenticationResult], from_domain: str) -> str:
    def prop(result: authres.BaseAuthenticationResult, ptype: str, name: str) -> str:
        for p in result.properties:
            if p.type == ptype and p.name == name:
                return str(p.value or "")
        return ""

    by_method: dict[str, list[authres.BaseAuthenticationResult]] = {}
    for result in results:
        by_method.setdefault(result.method.lower(), []).append(result)
    for result in by_method.get("dmarc", []):
        if _domain(prop(result, "header", "from")) in ("", from_domain):
            if result.result.lower() == "fail":
                return f"DMARC failed for {from_domain}"
            if result.result.lower() == "pass":
                return ""
    aligned_dkim = [
        r
        for r in by_method.get("dkim", [])
        if from_domain in (_domain(prop(r, "header", "d")), _domain(prop(r, "header", "i")))
    ]
    if any(r.result.lower() == "pass" for r in aligned_dkim):
        return ""
    for result in by_method.get("spf", []):
        mailfrom = _domain(prop(result, "smtp", "mailfrom"))
        if mailfrom == from_domain and result.result.lower() == "fail":
            return f"SPF failed for {from_domain}"
    if any(r.result.lower() == "fail" for r in aligned_dkim):
        return f"DKIM failed for {from_domain}"
    return ""
