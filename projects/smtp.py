"""Sending through a project's own SMTP server (its custom email address).

Always encrypted: STARTTLS on any port but 465, implicit TLS on 465 — the credentials never
cross the network in the clear, and a server that offers no STARTTLS is refused. The
authentication mechanism is the one the project chose, or smtplib's choice for "auto".
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend

from servicedesk.encryption import decrypt

from .models import CustomEmail

Error = CustomEmail.Error
IMPLICIT_TLS_PORT = 465
_MECHANISMS = {
    CustomEmail.Authentication.PLAIN: ("PLAIN", "auth_plain"),
    CustomEmail.Authentication.LOGIN: ("LOGIN", "auth_login"),
    CustomEmail.Authentication.CRAM_MD5: ("CRAM-MD5", "auth_cram_md5"),
}


class _SMTPWithMechanism(smtplib.SMTP):
    mechanism: str = "auto"

    def login(self, user: str, password: str, *, initial_response_ok: bool = True) -> Any:
        if self.mechanism not in _MECHANISMS:
            return super().login(user, password, initial_response_ok=initial_response_ok)
        name, method = _MECHANISMS[self.mechanism]  # type: ignore[index]
        self.ehlo_or_helo_if_needed()
        offered = self.esmtp_features.get("auth", "").upper().split()
        if name not in offered:
            raise smtplib.SMTPException(f"the server does not offer AUTH {name}")
        self.user, self.password = user, password
        return self.auth(name, getattr(self, method), initial_response_ok=initial_response_ok)


class _SMTPSSLWithMechanism(smtplib.SMTP_SSL, _SMTPWithMechanism):
    pass


class CustomSmtpBackend(EmailBackend):
    """Django's SMTP backend with a chosen AUTH mechanism and an optional private CA."""

    def __init__(self, *, mechanism: str = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mechanism = mechanism

    @property
    def connection_class(self):  # type: ignore[no-untyped-def]
        base = _SMTPSSLWithMechanism if self.use_ssl else _SMTPWithMechanism
        mechanism = self.mechanism

        def connect(*args: Any, **kwargs: Any) -> smtplib.SMTP:
            connection = base(*args, **kwargs)
            connection.mechanism = mechanism
            return connection

        return connect

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if settings.SERVICEDESK_CUSTOM_SMTP_CA_FILE:
            context.load_verify_locations(cafile=settings.SERVICEDESK_CUSTOM_SMTP_CA_FILE)
        return context

    def open(self) -> bool | None:
        opened = super().open()
        # Django's open() starts TLS only when asked and then trusts it was done: check.
        encrypted = isinstance(getattr(self.connection, "sock", None), ssl.SSLSocket)
        if opened and not encrypted:
            self.close()
            raise smtplib.SMTPNotSupportedError("the connection is not encrypted")
        return opened


def connection_for(custom: CustomEmail) -> CustomSmtpBackend:
    implicit = custom.smtp_port == IMPLICIT_TLS_PORT
    return CustomSmtpBackend(
        host=custom.smtp_host,
        port=custom.smtp_port,
        username=decrypt(custom.smtp_username_encrypted),
        password=decrypt(custom.smtp_password_encrypted),
        use_tls=not implicit,
        use_ssl=implicit,
        timeout=settings.SERVICEDESK_CUSTOM_SMTP_TIMEOUT,
        mechanism=custom.smtp_authentication,
        fail_silently=False,
    )


def smtp_failure_reason(exc: BaseException) -> str:
    """What a failure to send the verification email says about the project's settings."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return Error.INVALID_CREDENTIALS
    if isinstance(exc, smtplib.SMTPException) and "AUTH" in str(exc).upper():
        return Error.INVALID_CREDENTIALS  # no mechanism we may use: the settings are wrong
    # smtplib turns a read that timed out into SMTPServerDisconnected; the timeout is its cause.
    if isinstance(exc, (TimeoutError, socket.timeout)) or isinstance(
        exc.__context__, (TimeoutError, socket.timeout)
    ):
        return Error.READ_TIMEOUT
    return Error.SMTP_HOST_ISSUE


def describe_failure(exc: BaseException, password: str = "") -> str:
    """One line about a failure, for logs and the settings page; never the password."""
    text = f"{type(exc).__name__}: {exc}"
    if password:
        text = text.replace(password, "[password]")
    return text[:2000]
