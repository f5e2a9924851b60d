from __future__ import annotations

import logging
import secrets
from email.utils import formataddr
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage

from servicedesk.encryption import decrypt

from .custom_email import (
    TOKEN_LINE,
    custom_email_verification_fail,
    custom_email_verifications_expire,
)
from .models import CustomEmail
from .smtp import connection_for, describe_failure, smtp_failure_reason

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def send_custom_email_verification(custom_id: int, token: str) -> None:
    """Send the verification email through the project's own SMTP server (after the commit
    that saved the credentials: never inside a transaction)."""
    custom = (
        CustomEmail.objects.select_related("project__service_desk")
        .filter(pk=custom_id, state=CustomEmail.State.STARTED, token=token)
        .first()
    )
    if custom is None:
        return  # verified, failed, restarted or reset since
    project = custom.project
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    message = EmailMessage(
        subject=f"Verify the custom email address {custom.address} for {project.full_path}",
        body=(
            f"This email checks that {custom.address} can send Service Desk emails for "
            f"{project.full_path}, and that your provider forwards its emails to the "
            "project's Service Desk address.\n\n"
            f"{TOKEN_LINE} {token}\n"
        ),
        from_email=formataddr((project.service_desk.display_name, custom.address)),
        to=[custom.verification_address],
        headers={"Message-ID": f"<verify-{secrets.token_hex(16)}@{host}>"},
    )
    try:
        connection = connection_for(custom)
        message.connection = connection
        message.send()
    except Exception as exc:  # every failure is the verification's result
        password = ""
        try:
            password = decrypt(custom.smtp_password_encrypted)
        except Exception:  # the key is gone: there is nothing to redact either
            log.debug("could not decrypt the password to redact it", exc_info=True)
        log.warning(
            "custom email verification for project %s: %s",
            project.pk,
            describe_failure(exc, password),
        )
        custom_email_verification_fail(
            custom_id=custom.pk, token=token, error=smtp_failure_reason(exc)
        )


@shared_task(ignore_result=True)
def expire_custom_email_verifications() -> int:
    return custom_email_verifications_expire()
