"""System checks (``manage.py check``): the keys that encrypt projects' SMTP credentials."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from servicedesk.encryption import encrypt


@register()
def encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        encrypt("check")
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="projects.E001")]
    if settings.PRODUCTION and not settings.SERVICEDESK_ENCRYPTION_KEYS:
        return [
            Warning(
                "SERVICEDESK_ENCRYPTION_KEYS is unset: projects' SMTP credentials are encrypted "
                "with a key derived from SECRET_KEY.",
                hint="Set SERVICEDESK_ENCRYPTION_KEYS (or _FILE) to a key of its own "
                "(`manage.py rotate_encryption_keys --new-key`), then run "
                "`manage.py rotate_encryption_keys`.",
                id="projects.W001",
            )
        ]
    return []
