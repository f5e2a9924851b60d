"""The client's IP address, behind the reverse proxies we trust (``TRUSTED_PROXIES``).

``X-Forwarded-For`` is a list each proxy appends its peer's address to, so only its right end
is trustworthy: anyone can send the header with any addresses in it. Reading it from the right,
each entry was written by the hop to its right; we may believe an entry only while that hop is
one of our proxies. The client is therefore the right-most address that is not itself a trusted
proxy. Without a trusted proxy in ``REMOTE_ADDR`` the header is ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _parse(value: str) -> Address | None:
    """An address as proxies write it: bare, ``192.0.2.1:443`` or ``[2001:db8::1]:443``."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:192.0.2.1.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """The address of the client that sent ``request``, as a string.

    ``REMOTE_ADDR`` unless it is a trusted proxy; then the right-most ``X-Forwarded-For`` entry
    that is not a trusted proxy. An entry that is not an address stops the walk at the trusted
    hop after it (a proxy that writes garbage is not believed further).
    """
    remote_addr = request.META.get("REMOTE_ADDR", "")
    address = _parse(remote_addr)
    if address is None:
        return remote_addr
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not _trusted(address, networks):
        return str(address)
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        forwarded = _parse(entry)
        if forwarded is None:
            break
        address = forwarded
        if not _trusted(address, networks):
            break
    return str(address)
