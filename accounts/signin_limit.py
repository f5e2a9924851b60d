"""The sign-in limit: one limiter for every sign-in form, counted in fixed windows.

Every attempt counts (the right password too, so that guessing cannot be interleaved with
signing in): ``SERVICEDESK_LOGIN_ATTEMPTS`` per account and client address, five times that per
client address (many accounts tried from one). The authentication backend asks before any
password is checked (accounts/backends.py), so our /login/ and the Django admin's login — and
any form that authenticates with the request — share the counters.

Keys are normalised so that one account is one counter: usernames by NFKC and case folding
(fullwidth ``bob``, ``BOB`` and ``bob`` are one), addresses by ``client_ip`` (behind trusted
proxies) and, for IPv6, by their /64: one host usually holds a whole /64 and can pick any
address in it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import unicodedata

from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext_lazy

from servicedesk import ratelimit
from servicedesk.client_ip import client_ip

TOO_MANY_ATTEMPTS = gettext_lazy("Too many sign-in attempts. Wait a few minutes, then try again.")


def username_key(username: str) -> str:
    """Unicode's identifier caseless match (NFKC, case fold, NFKC: the fold can undo the first
    normalisation), as a fixed-length hash so that any input makes a short key."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    return hashlib.sha256(folded.strip().encode()).hexdigest()[:32]


def address_key(request: HttpRequest) -> str:
    address = client_ip(request)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


def sign_in_over_limit(request: HttpRequest, username: str) -> bool:
    """Count one sign-in attempt; True when it is over the limit and must be refused."""
    window = settings.SERVICEDESK_LOGIN_WINDOW
    limit = settings.SERVICEDESK_LOGIN_ATTEMPTS
    address = address_key(request)
    per_account = ratelimit.hit(
        f"login:{address}:{username_key(username)}", limit=limit, window=window
    )
    per_address = ratelimit.hit(f"login:{address}", limit=limit * 5, window=window)
    return per_account or per_address
