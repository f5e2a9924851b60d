from __future__ import annotations

from .models import SUPPORT_BOT_USERNAME, User


def support_bot() -> User:
    """The Support Bot user, created by a data migration (accounts 0002)."""
    return User.objects.get(username=SUPPORT_BOT_USERNAME)
