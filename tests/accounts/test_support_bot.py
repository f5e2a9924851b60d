from __future__ import annotations

import pytest
from django.contrib.auth import authenticate

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_support_bot_is_created_by_the_migration() -> None:
    bot = User.objects.get(username="support-bot")
    assert bot.display_name == "Support Bot"
    assert bot.is_bot
    assert not bot.has_usable_password()


def test_support_bot_can_never_log_in(client) -> None:
    bot = User.objects.get(username="support-bot")
    bot.set_password("guessable")
    bot.save()
    assert authenticate(username="support-bot", password="guessable") is None
    assert not client.login(username="support-bot", password="guessable")
