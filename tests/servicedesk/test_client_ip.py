"""client_ip(): X-Forwarded-For is believed only as far as our trusted proxies wrote it."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from servicedesk.client_ip import client_ip


@pytest.fixture(autouse=True)
def proxies(settings):  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "2001:db8:ffff::1"]


def ip(remote_addr: str, forwarded_for: str | None = None) -> str:
    headers = {} if forwarded_for is None else {"HTTP_X_FORWARDED_FOR": forwarded_for}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers))


def test_without_trusted_proxies_the_header_is_ignored(settings) -> None:
    settings.TRUSTED_PROXIES = []
    assert ip("10.0.0.2", "203.0.113.5") == "10.0.0.2"


def test_a_client_that_is_not_a_trusted_proxy_cannot_forward_for_anyone() -> None:
    assert ip("198.51.100.7", "203.0.113.5") == "198.51.100.7"
    assert ip("198.51.100.7", "10.0.0.9") == "198.51.100.7"


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() -> None:
    assert ip("10.0.0.2", "203.0.113.5") == "203.0.113.5"
    # What the client put in the header itself stays to the left and is not believed.
    assert ip("10.0.0.2", "192.0.2.1, 203.0.113.5") == "203.0.113.5"
    # Two of our proxies in a row (a load balancer, then nginx).
    assert ip("10.0.0.2", "192.0.2.1, 203.0.113.5, 10.1.2.3") == "203.0.113.5"
    # Several headers arrive joined by commas.
    assert ip("10.0.0.2", "192.0.2.1,203.0.113.5") == "203.0.113.5"


def test_a_trusted_proxy_that_forwards_nothing_is_the_client() -> None:
    assert ip("10.0.0.2") == "10.0.0.2"
    assert ip("10.0.0.2", "") == "10.0.0.2"
    # Garbage is not followed past the trusted hop that wrote it.
    assert ip("10.0.0.2", "203.0.113.5, unknown") == "10.0.0.2"
    assert ip("10.0.0.2", "203.0.113.5, unknown, 10.1.2.3") == "10.1.2.3"


def test_all_trusted_gives_the_left_most() -> None:
    assert ip("10.0.0.2", "10.9.9.9, 10.1.2.3") == "10.9.9.9"


def test_ipv6_ports_and_mapped_addresses() -> None:
    assert ip("2001:db8:ffff::1", "2001:db8::42") == "2001:db8::42"
    assert ip("10.0.0.2", "[2001:db8::42]:51234") == "2001:db8::42"
    assert ip("10.0.0.2", "203.0.113.5:51234") == "203.0.113.5"
    # A dual-stack socket's view of an IPv4 proxy is still that proxy.
    assert ip("::ffff:10.0.0.2", "203.0.113.5") == "203.0.113.5"
    assert ip("2001:db8:ffff::2", "203.0.113.5") == "2001:db8:ffff::2"
