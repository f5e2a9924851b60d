"""Secrets at rest: text encrypted with Fernet (AES-128-CBC + HMAC-SHA256, cryptography).

``SERVICEDESK_ENCRYPTION_KEYS`` lists Fernet keys, newest first: the first encrypts, all of
them decrypt (MultiFernet), so a key is rotated by putting a new one first, re-encrypting
(``manage.py rotate_encryption_keys``) and then removing the old one. The key derived from
SECRET_KEY (HKDF-SHA256) always decrypts as the last resort and encrypts when no key is
configured: ``make run`` works without setup, and an instance that adds its own keys later
can still read, and rotate away from, what it stored before.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt", "generate_key", "rotate"]

_HKDF_INFO = b"servicedesk: secrets at rest"


def generate_key() -> str:
    return Fernet.generate_key().decode()


def _derived_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except ValueError:
            # Never the key itself in the message: it is a secret.
            raise ImproperlyConfigured(
                f"SERVICEDESK_ENCRYPTION_KEYS: key {position} is not a Fernet key (32 bytes, "
                "url-safe base64; make one with `manage.py rotate_encryption_keys --new-key`)."
            ) from None
    fernets.append(Fernet(_derived_key(secret_key)))
    return MultiFernet(fernets)


def _current() -> MultiFernet:
    return _fernet(tuple(settings.SERVICEDESK_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(text: str) -> str:
    return _current().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    """The text; raises InvalidToken if no configured key opens it."""
    return _current().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """The same text encrypted with the newest key."""
    return _current().rotate(token.encode()).decode()
