"""Spam checking of new Service Desk emails with Akismet (the ``akismet`` package).

Off unless ``AKISMET_API_KEY`` is set (``manage.py check`` says so). The client class is a
setting so that tests use the package's own ``akismet.TestSyncClient`` subclasses, which answer
without the network. A failure to reach Akismet lets the email through — holding every email
because a third party is down would be worse — and the decision trace records it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from functools import lru_cache
from typing import Any

import akismet
from django.conf import settings
from django.utils.module_loading import import_string

from .parsing import ParsedEmail

log = logging.getLogger(__name__)
_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")


def enabled() -> bool:
    return bool(settings.AKISMET_API_KEY)


@lru_cache(maxsize=4)
def _client(client_class: str, key: str, url: str) -> akismet.SyncClient:
    cls = import_string(client_class)
    return cls(config=akismet.Config(key=key, url=url))


def client() -> akismet.SyncClient | None:
    if not enabled():
        return None
    return _client(
        settings.AKISMET_CLIENT_CLASS, settings.AKISMET_API_KEY, settings.AKISMET_SITE_URL
    )


def sender_ip(email: ParsedEmail) -> str:
    """The first public address in the Received chain (the client that handed the email to
    the first server), else 127.0.0.1: Akismet needs an IP and email has no other."""
    for received in reversed(email.header_all("Received")):
        for candidate in _IP.findall(received):
            try:
                address = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            if address.is_global:
                return str(address)
    return "127.0.0.1"


def _arguments(email: ParsedEmail) -> dict[str, Any]:
    return {
        "user_ip": sender_ip(email),
        "comment_type": "message",
        "comment_author": email.from_name[:200],
        "comment_author_email": email.from_address or "",
        "comment_content": f"{email.subject}\n\n{email.body_text}"[:50_000],
        "blog_charset": "UTF-8",
    }


def check(email: ParsedEmail) -> tuple[bool, str]:
    """(is spam, what happened) — "what happened" goes into the decision trace."""
    spam_client = client()
    if spam_client is None:
        return False, "off"
    try:
        verdict = spam_client.comment_check(**_arguments(email))
    except akismet.AkismetError as exc:
        log.warning("Akismet check failed, the email is let through: %s", type(exc).__name__)
        return False, f"error: {type(exc).__name__}"
    if verdict == akismet.CheckResponse.HAM:
        return False, "ham"
    return True, "discard" if verdict == akismet.CheckResponse.DISCARD else "spam"


def report(email: ParsedEmail, *, spam: bool) -> bool:
    """Tell Akismet it was wrong (``spam=False``: ham) or right; False when off or failing."""
    spam_client = client()
    if spam_client is None:
        return False
    try:
        submit = spam_client.submit_spam if spam else spam_client.submit_ham
        return bool(submit(**_arguments(email)))
    except akismet.AkismetError as exc:
        log.warning("Akismet report failed: %s", type(exc).__name__)
        return False
