"""System checks (``manage.py check``): what an operator should know about mail intake."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Info, register


@register()
def akismet_configured(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.AKISMET_API_KEY:
        return []
    return [
        Info(
            "Akismet is not configured: new Service Desk emails are not checked for spam.",
            hint="Set AKISMET_API_KEY (or AKISMET_API_KEY_FILE) to turn spam checking on.",
            id="mailroom.I001",
        )
    ]
