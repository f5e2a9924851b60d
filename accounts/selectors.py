from __future__ import annotations

from django.contrib.auth.hashers import make_password

from .models import SUPPORT_BOT_USERNAME, User


def support_bot() -> User:
    """The Support Bot user.

    Created by a data migration (accounts 0002); recreated here if someone deleted it (or a
    test flushed the database), because mail must never fail for want of its author.
    """
    bot, _ = User.objects.get_or_create(
        username=SUPPORT_BOT_USERNAME,
        defaults={"name": "Support Bot", "is_bot": True, "password": make_password(None)},
    )
    return bot
