"""Sign-in attempts are limited per account and client address (Redis-counted), by one limiter
for every sign-in form: ours at /login/ and the Django admin's."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"


@pytest.fixture(autouse=True)
def limits(settings, redis_cache_flushed, rate_window_frozen):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_LOGIN_ATTEMPTS = 3
    settings.TRUSTED_PROXIES = []


def attempt(client, username: str, password: str, address: str = "198.51.100.7", **headers):  # type: ignore[no-untyped-def]
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **headers,
    )


def admin_attempt(client, username: str, password: str, address: str = "198.51.100.7"):  # type: ignore[no-untyped-def]
    return client.post(
        "/admin/login/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def signed_in(client) -> bool:  # type: ignore[no-untyped-def]
    return "_auth_user_id" in client.session


def test_guessing_a_password_is_stopped_even_for_the_right_one(client, reporter) -> None:
    reporter.set_password("right-password")
    reporter.save()
    for _ in range(3):
        assert attempt(client, reporter.username, "wrong").status_code == 200
    blocked = attempt(client, reporter.username, "right-password")
    assert blocked.status_code == 429
    assert b"Too many sign-in attempts" in blocked.content
    assert not signed_in(client)
    # Another address is not blocked for this account.
    assert attempt(client, reporter.username, "right-password", "192.0.2.1").status_code == 302


def test_many_accounts_from_one_address_are_stopped_too(client, reporter) -> None:
    for i in range(15):
        assert attempt(client, f"user{i}", "x").status_code == 200
    assert attempt(client, "user-next", "x").status_code == 429


def test_normal_sign_in_still_works(client, reporter) -> None:
    reporter.set_password("right-password")
    reporter.save()
    assert attempt(client, reporter.username, "right-password").status_code == 302


def test_admin_sign_in_is_limited_and_refuses_the_right_password(client) -> None:
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for _ in range(3):
        assert admin_attempt(client, "root", "wrong").status_code == 200
    blocked = admin_attempt(client, "root", PASSWORD)
    assert blocked.status_code == 429
    assert b"Too many sign-in attempts" in blocked.content
    assert not signed_in(client)
    # The right password works from elsewhere: the limit refused it, nothing else did.
    assert admin_attempt(client, "root", PASSWORD, "192.0.2.1").status_code == 302
    assert signed_in(client)


def test_attempts_on_our_form_and_the_admins_share_one_counter(client, reporter) -> None:
    assert attempt(client, "bob", "wrong").status_code == 200
    assert admin_attempt(client, "bob", "wrong").status_code == 200
    assert admin_attempt(client, "bob", "wrong").status_code == 200
    assert attempt(client, "bob", PASSWORD).status_code == 429
    assert not signed_in(client)


def test_usernames_equal_after_normalisation_share_a_counter(client, reporter) -> None:
    # Fullwidth "bob" is "bob" after NFKC (the form signs it in as bob); "BOB" after case folding.
    fullwidth, fullwidth_upper = "\uff42\uff4f\uff42", "\uff22\uff2f\uff22"
    for spelling in (fullwidth, "BOB", fullwidth_upper):
        assert attempt(client, spelling, "wrong").status_code == 200
    assert attempt(client, "bob", PASSWORD).status_code == 429
    assert not signed_in(client)


def test_clients_behind_a_trusted_proxy_have_their_own_counters(client, settings, reporter) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    attacker = {"HTTP_X_FORWARDED_FOR": "203.0.113.66"}
    for i in range(15):
        assert attempt(client, f"user{i}", "x", PROXY, **attacker).status_code == 200
    assert attempt(client, "bob", "x", PROXY, **attacker).status_code == 429
    # bob signs in through the same proxy: the attacker's counters are not his.
    bob = {"HTTP_X_FORWARDED_FOR": "198.51.100.20"}
    assert attempt(client, "bob", PASSWORD, PROXY, **bob).status_code == 302
    assert signed_in(client)


def test_x_forwarded_for_cannot_choose_the_address_that_is_counted(
    client, settings, reporter
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # Straight to us, not through the proxy: the header is ignored.
    for i in range(3):
        forged = {"HTTP_X_FORWARDED_FOR": f"192.0.2.{i}"}
        assert attempt(client, "bob", "wrong", "198.51.100.7", **forged).status_code == 200
    forged = {"HTTP_X_FORWARDED_FOR": "192.0.2.99"}
    assert attempt(client, "bob", PASSWORD, "198.51.100.7", **forged).status_code == 429
    # Through the proxy, with addresses of its own choosing in front of the one the proxy saw.
    for i in range(3):
        forged = {"HTTP_X_FORWARDED_FOR": f"192.0.2.{i}, 203.0.113.66"}
        assert attempt(client, "bob", "wrong", PROXY, **forged).status_code == 200
    forged = {"HTTP_X_FORWARDED_FOR": "192.0.2.99, 203.0.113.66"}
    assert attempt(client, "bob", PASSWORD, PROXY, **forged).status_code == 429
    assert not signed_in(client)


def test_addresses_of_one_ipv6_network_share_a_counter(client, reporter) -> None:
    # A host usually holds a whole /64: its addresses are one client.
    for i in range(3):
        assert attempt(client, "bob", "wrong", f"2001:db8:1:2::{i + 1:x}").status_code == 200
    assert attempt(client, "bob", PASSWORD, "2001:db8:1:2:ffff::9").status_code == 429
    assert attempt(client, "bob", PASSWORD, "2001:db8:1:3::1").status_code == 302
