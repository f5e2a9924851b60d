"""Where webhooks may go: never to the instance's own networks (SSRF), unless allowed.

A receiver's host is resolved and every address it has is checked; the request then goes to
the checked address (the Host header and TLS name stay the host's), so that a DNS answer that
changes between the check and the connection (DNS rebinding) cannot point it elsewhere.
Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL is not one a webhook may be sent to (``permanent``: not even later; a host
    that does not resolve now may later)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


def _allowed(address: IPAddress) -> bool:
    networks = settings.SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


# Why an address is refused, by the ipaddress property that says so (checked in this order).
_REFUSALS = {
    "loopback": gettext_lazy("%(address)s is a loopback address"),
    "private": gettext_lazy("%(address)s is a private address"),
    "link_local": gettext_lazy("%(address)s is a link-local address"),
    "multicast": gettext_lazy("%(address)s is a multicast address"),
    "reserved": gettext_lazy("%(address)s is a reserved address"),
    "unspecified": gettext_lazy("%(address)s is an unspecified address"),
}


def address_refusal(address: IPAddress) -> str:
    """Why a webhook may not go to ``address`` ("" if it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if _allowed(address):
        return ""
    for kind, refusal in _REFUSALS.items():
        if getattr(address, f"is_{kind}"):
            return str(refusal) % {"address": address}
    if not address.is_global:
        return _("%(address)s is not a public address") % {"address": address}
    return ""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: IPAddress  # the checked address to connect to


def resolve(url: str) -> Target:
    """The URL's host resolved and checked; raises TargetRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(_("Only http:// and https:// URLs with a host can be webhooks."))
    if parts.username or parts.password:
        raise TargetRefused(_("Put credentials in the secret token, not in the URL."))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(_("Invalid port: %(error)s") % {"error": exc}) from None
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(
            _("%(host)s cannot be resolved: %(error)s") % {"host": host, "error": exc},
            permanent=False,
        ) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise TargetRefused(_("%(host)s has no address") % {"host": host})
    for address in addresses:
        reason = address_refusal(address)
        if reason:
            # One bad address is enough: the connection might use it.
            raise TargetRefused(
                _(
                    "%(host)s resolves to %(reason)s; webhooks to the instance's own networks "
                    "are refused (an administrator can allow them with "
                    "SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE)."
                )
                % {"host": host, "reason": reason}
            )
    return Target(parts.scheme, host, port, addresses[0])
