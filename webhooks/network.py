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


def address_refusal(address: IPAddress) -> str:
    """Why a webhook may not go to ``address`` ("" if it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if _allowed(address):
        return ""
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a public address"
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
        raise TargetRefused("Only http:// and https:// URLs with a host can be webhooks.")
    if parts.username or parts.password:
        raise TargetRefused("Put credentials in the secret token, not in the URL.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"Invalid port: {exc}") from None
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} cannot be resolved: {exc}", permanent=False) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"{host} has no address")
    for address in addresses:
        reason = address_refusal(address)
        if reason:
            # One bad address is enough: the connection might use it.
            raise TargetRefused(
                f"{host} resolves to {reason}; webhooks to the instance's own networks are "
                "refused (an administrator can allow them with SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE)."
            )
    return Target(parts.scheme, host, port, addresses[0])
