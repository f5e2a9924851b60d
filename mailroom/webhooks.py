"""ESP inbound webhooks (django-anymail), closed unless configured.

Only the inbound webhooks of the ESPs listed in ``SERVICEDESK_INBOUND_ESPS`` answer; every
other URL under ``/-/anymail/`` — other ESPs, and every tracking webhook, which nothing here
consumes — is a 404. The list is read per request, like any setting a view reads, so each URL
behaves exactly as if only the configured ESPs had been routed.

anymail accepts unauthenticated posts when ``ANYMAIL_WEBHOOK_SECRET`` is unset (it only
warns). In production that is refused here as well as by the system check ``mailroom.E001``,
because gunicorn does not run system checks: a post then fails loudly (500, so the ESP keeps
the message and retries) instead of letting anyone write into the ledger.
"""

from __future__ import annotations

from typing import Any

from anymail.utils import get_anymail_setting
from anymail.webhooks.amazon_ses import AmazonSESInboundWebhookView
from anymail.webhooks.mailgun import MailgunInboundWebhookView
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from anymail.webhooks.sendgrid import SendGridInboundWebhookView
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, re_path
from django.views.decorators.csrf import csrf_exempt

# The ESPs whose inbound webhook hands us the whole raw email (what the ledger stores), with
# the view anymail provides for it.
INBOUND_VIEWS: dict[str, Any] = {
    "amazon_ses": AmazonSESInboundWebhookView,
    "mailgun": MailgunInboundWebhookView,
    "postmark": PostmarkInboundWebhookView,
    "sendgrid": SendGridInboundWebhookView,
}


def webhook_secret_configured() -> bool:
    """Whether anymail has a basic-auth secret (ANYMAIL["WEBHOOK_SECRET"] or
    ANYMAIL_WEBHOOK_SECRET), read the way anymail itself reads it."""
    return bool(get_anymail_setting("webhook_secret", default=None))


def _inbound_view(esp: str) -> Any:
    anymail_view = INBOUND_VIEWS[esp].as_view()

    @csrf_exempt
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if esp not in settings.SERVICEDESK_INBOUND_ESPS:
            raise Http404("This ESP's inbound webhook is not configured.")
        if settings.PRODUCTION and not webhook_secret_configured():
            raise ImproperlyConfigured(
                f"The {esp} inbound webhook is configured without ANYMAIL_WEBHOOK_SECRET: "
                "refusing unauthenticated posts (see manage.py check)."
            )
        return anymail_view(request, *args, **kwargs)  # type: ignore[no-any-return]

    return view


@csrf_exempt
def _not_routed(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404("No webhook here.")


urlpatterns: list[URLPattern] = [
    path("amazon_ses/inbound/", _inbound_view("amazon_ses"), name="amazon_ses_inbound_webhook"),
    # anymail decides by the "mime" in the URL whether Mailgun posts the raw message (we use
    # inbound_mime/); both spellings are anymail's.
    re_path(
        r"^mailgun/inbound(_mime)?/$", _inbound_view("mailgun"), name="mailgun_inbound_webhook"
    ),
    path("postmark/inbound/", _inbound_view("postmark"), name="postmark_inbound_webhook"),
    path("sendgrid/inbound/", _inbound_view("sendgrid"), name="sendgrid_inbound_webhook"),
    # Anything else under the prefix is a 404 here, not left to the project catch-all route
    # (whose 405 to a POST would say that something lives there).
    re_path(r"", _not_routed),
]
