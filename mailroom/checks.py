"""System checks (``manage.py check``): what an operator should know about mail intake."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Warning, register

from .webhooks import INBOUND_VIEWS, webhook_secret_configured


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


@register()
def inbound_webhooks_closed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """An inbound webhook without a basic-auth secret lets anyone write into the ledger.

    Not a deploy-only check: in production it fails ``migrate`` (so docker-compose never starts
    the web service) as well as ``check --deploy``.
    """
    esps = settings.SERVICEDESK_INBOUND_ESPS
    messages: list[CheckMessage] = []
    unknown = sorted(set(esps) - set(INBOUND_VIEWS))
    if unknown:
        messages.append(
            Error(
                f"SERVICEDESK_INBOUND_ESPS names an ESP without an inbound webhook here: "
                f"{', '.join(unknown)}.",
                hint=f"Use any of: {', '.join(sorted(INBOUND_VIEWS))}.",
                id="mailroom.E002",
            )
        )
    if esps and not webhook_secret_configured():
        text = (
            f"Inbound webhooks are routed ({', '.join(esps)}) but ANYMAIL_WEBHOOK_SECRET is "
            "unset: anyone could post email into the ledger."
        )
        hint = "Set ANYMAIL_WEBHOOK_SECRET=user:password and give the ESP that basic auth."
        if settings.PRODUCTION:
            messages.append(Error(text, hint=hint, id="mailroom.E001"))
        else:
            messages.append(Warning(text, hint=hint, id="mailroom.W001"))
    return messages
