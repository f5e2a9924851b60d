"""Sign-in attempts are limited per account and client address (Redis-counted)."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def limits(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_LOGIN_ATTEMPTS = 3


def attempt(client, username: str, password: str, address: str = "198.51.100.7"):  # type: ignore[no-untyped-def]
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_guessing_a_password_is_stopped_even_for_the_right_one(client, reporter) -> None:
    reporter.set_password("right-password")
    reporter.save()
    for _ in range(3):
        assert attempt(client, reporter.username, "wrong").status_code == 200
    blocked = attempt(client, reporter.username, "right-password")
    assert blocked.status_code == 429
    assert b"Too many sign-in attempts" in blocked.content
    assert "_auth_user_id" not in client.session
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
