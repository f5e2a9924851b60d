"""Webhook secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from
SECRET_KEY, so a database dump alone does not give away the tokens receivers trust.

Rotating SECRET_KEY makes stored secrets unreadable: ``decrypt`` then answers "" and the
hook is sent unsigned until its secret is entered again (the settings page says so).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    digest = hashlib.sha256(f"servicedesk.webhooks:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode() if value else ""


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        return ""
