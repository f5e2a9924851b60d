"""A project's own email address: services (every write) and the verification's rules.

The flow (GitLab's): a Maintainer saves the address and the SMTP credentials → after commit a
task sends, through that SMTP server, a mail From the address To ``<local>+verify@<domain>``
with a 12-character token → the customer's provider forwards it to the project's Service Desk
address → the mailroom recognises it (mailroom.handlers) and calls
``custom_email_verification_received`` → *verified* or *failed* with a reason. Owners and
whoever started it hear the result by email. ``custom_email_verifications_expire`` (beat)
fails the verifications whose email never came.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from issues.emails import team_emails_record
from servicedesk.addresses import is_our_address
from servicedesk.encryption import encrypt
from servicedesk.queues import enqueue

from .models import CustomEmail, Project, Role
from .selectors import project_member_list

if TYPE_CHECKING:
    from accounts.models import User

Error = CustomEmail.Error
State = CustomEmail.State
TOKEN_LENGTH = 12
_TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LINE = "Verification token:"  # noqa: S105 (a label, not a secret)
_TOKEN_IN_BODY = re.compile(rf"{re.escape(TOKEN_LINE)}\s*(\S+)")

# What to fix, per reason: shown on the settings page and in the result email.
ERROR_ADVICE = {
    Error.SMTP_HOST_ISSUE: _(
        "We could not reach the SMTP server or it refused to send. Check the host and the port "
        "(587 for STARTTLS, 465 for TLS) and that the server accepts connections from this "
        "instance."
    ),
    Error.INVALID_CREDENTIALS: _(
        "The SMTP server refused the username and password. Check them, and the authentication "
        "method (Automatic works with most servers)."
    ),
    Error.READ_TIMEOUT: _(
        "The SMTP server did not answer in time. Check the host and the port, and that no "
        "firewall holds the connection."
    ),
    Error.MAIL_NOT_RECEIVED: _(
        "The verification email did not reach the project's Service Desk address within 30 "
        "minutes. Check that your email provider forwards every email to the custom address to "
        "the project's Service Desk address."
    ),
    Error.INCORRECT_FORWARDING_TARGET: _(
        "The verification email was forwarded to another address (the alias address or another "
        "project's). Forward to the project's Service Desk address shown on this page."
    ),
    Error.INCORRECT_FROM: _(
        "The forwarded verification email did not come From the custom address. Make sure your "
        "provider forwards emails as they are, without rewriting the sender."
    ),
    Error.INCORRECT_TOKEN: _(
        "The forwarded verification email did not hold the token we sent. Make sure your "
        "provider forwards emails unchanged, and try again."
    ),
}


def _new_token() -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def _check_address(address: str, project: Project) -> str:
    address = address.strip().lower()
    if "+" in address.partition("@")[0]:
        raise ValidationError({"address": _("Use the address without a +suffix.")})
    if is_our_address(address):
        raise ValidationError({"address": _("That is one of this instance's own addresses.")})
    taken = (
        CustomEmail.objects.annotate(lowered=Lower("address"))
        .filter(lowered=address)
        .exclude(project=project)
        .exists()
    )
    if taken:
        raise ValidationError({"address": _("Another project already uses this address.")})
    return address


def _start(custom: CustomEmail, actor: User) -> None:
    custom.state = State.STARTED
    custom.token = _new_token()
    custom.triggered_at = timezone.now()
    custom.triggered_by = actor
    custom.error = ""
    custom.enabled = False
    token = custom.token
    transaction.on_commit(
        lambda: enqueue("projects.tasks.send_custom_email_verification", custom.pk, token)
    )


@transaction.atomic
def custom_email_create(
    *,
    project: Project,
    actor: User,
    address: str,
    smtp_host: str,
    smtp_port: int,
    smtp_username: str,
    smtp_password: str,
    smtp_authentication: str,
) -> CustomEmail:
    """Save the project's address and credentials (encrypted) and start the verification."""
    if CustomEmail.objects.filter(project=project).exists():
        raise ValidationError(_("The project has a custom email address already; reset it first."))
    custom = CustomEmail(
        project=project,
        address=_check_address(address, project),
        smtp_host=smtp_host.strip(),
        smtp_port=smtp_port,
        smtp_username_encrypted=encrypt(smtp_username),
        smtp_password_encrypted=encrypt(smtp_password),
        smtp_authentication=smtp_authentication,
    )
    _start(custom, actor)
    try:
        with transaction.atomic():
            custom.save()
    except IntegrityError:  # the same address saved by another project a moment ago
        raise ValidationError(
            {"address": _("Another project already uses this address.")}
        ) from None
    return custom


@transaction.atomic
def custom_email_verification_restart(*, project: Project, actor: User) -> CustomEmail:
    custom = CustomEmail.objects.select_for_update().get(project=project)
    _start(custom, actor)
    custom.save()
    return custom


@transaction.atomic
def custom_email_enable(*, project: Project, enabled: bool) -> CustomEmail:
    custom = CustomEmail.objects.select_for_update().get(project=project)
    if enabled and custom.state != State.VERIFIED:
        raise ValidationError(_("Only a verified address can be turned on."))
    custom.enabled = enabled
    custom.save(update_fields=["enabled"])
    return custom


@transaction.atomic
def custom_email_reset(*, project: Project) -> None:
    """Forget the address and its credentials: emails go from the instance's address again."""
    CustomEmail.objects.filter(project=project).delete()


def _finish(custom: CustomEmail, error: str) -> None:
    """Record the result and tell the Owners and whoever started it (same transaction)."""
    custom.state = State.FAILED if error else State.VERIFIED
    custom.error = error
    custom.verified_at = None if error else timezone.now()
    custom.save(update_fields=["state", "error", "verified_at"])
    _result_emails(custom)


@transaction.atomic
def custom_email_verification_fail(*, custom_id: int, token: str, error: str) -> bool:
    """Fail the verification that sent ``token`` (the SMTP server refused it); False if that
    verification is over already (verified, failed, restarted or reset)."""
    custom = CustomEmail.objects.select_for_update().filter(pk=custom_id).first()
    if custom is None or custom.state != State.STARTED or custom.token != token:
        return False
    _finish(custom, error)
    return True


@dataclass(frozen=True)
class VerificationEmail:
    """What the mailroom read from a verification email that came back."""

    custom_id: int
    from_address: str
    body: str
    # Forwarded to the alias mailbox, to another project's address, or to none of ours.
    wrong_target: bool


@transaction.atomic
def custom_email_verification_received(mail: VerificationEmail) -> str:
    """Check, in GitLab's order, a verification email that came back; returns what happened
    ("verified", the reason it failed, or "not verifying")."""
    custom = CustomEmail.objects.select_for_update().filter(pk=mail.custom_id).first()
    if custom is None or custom.state != State.STARTED:
        return "not verifying"
    _finish(custom, verification_error(custom, mail))
    return custom.error or "verified"


def verification_error(custom: CustomEmail, mail: VerificationEmail) -> str:
    if custom.triggered_at is None or timezone.now() > custom.triggered_at + _timeframe():
        return Error.MAIL_NOT_RECEIVED
    if mail.wrong_target:
        return Error.INCORRECT_FORWARDING_TARGET
    if mail.from_address.strip().lower() != custom.address.lower():
        return Error.INCORRECT_FROM
    match = _TOKEN_IN_BODY.search(mail.body)
    found = match.group(1) if match else ""
    if not hmac.compare_digest(found.encode(), custom.token.encode()):
        return Error.INCORRECT_TOKEN
    return ""


def _timeframe() -> timedelta:
    return timedelta(minutes=settings.SERVICEDESK_CUSTOM_EMAIL_VERIFICATION_MINUTES)


def custom_email_verifications_expire() -> int:
    """Fail every verification whose email did not come back in time (beat, every minute)."""
    cutoff = timezone.now() - _timeframe()
    failed = 0
    for pk, token in CustomEmail.objects.filter(
        state=State.STARTED, triggered_at__lt=cutoff
    ).values_list("pk", "token"):
        failed += custom_email_verification_fail(
            custom_id=pk, token=token, error=Error.MAIL_NOT_RECEIVED
        )
    return failed


def _result_emails(custom: CustomEmail) -> None:
    project = custom.project
    people = {
        m.user.pk: m.user for m in project_member_list(project=project) if m.role >= Role.OWNER
    }
    starter = custom.triggered_by
    if starter is not None and starter.is_active:
        people[starter.pk] = starter
    by_language: dict[str, list[tuple[int, str]]] = {}
    for pk, user in sorted(people.items()):
        by_language.setdefault(user.email_language, []).append((pk, user.email))
    page = settings.SITE_URL + reverse("service_desk_custom_email", args=[project.full_path])
    for language, recipients in by_language.items():
        with translation.override(language):
            subject, text = _result_text(custom, page)
        team_emails_record(project=project, recipients=recipients, subject=subject, text=text)


def _result_text(custom: CustomEmail, page: str) -> tuple[str, str]:
    """The result email's subject and Markdown text, in the active language."""
    names = {"project": custom.project.full_path, "address": custom.address, "page": page}
    if custom.error:
        subject = gettext("[%(project)s] Verification of %(address)s failed") % names
        text = (
            gettext(
                "The verification of the custom email address `%(address)s` of %(project)s "
                "failed: **%(reason)s**."
            )
            % {**names, "reason": custom.get_error_display()}
            + "\n\n"
            + str(ERROR_ADVICE[CustomEmail.Error(custom.error)])
            + "\n\n"
            + gettext("Try again on the [settings page](%(page)s).") % names
        )
    else:
        subject = gettext("[%(project)s] %(address)s is verified") % names
        text = (
            gettext(
                "The custom email address `%(address)s` of %(project)s is verified. Turn it on "
                "on the [settings page](%(page)s) to send Service Desk emails from it."
            )
            % names
        )
    return subject, text


def custom_email_send_result(*, project_id: int, error: str) -> None:
    """What the project's SMTP server did with the latest batch of emails (the outbox)."""
    now = timezone.now()
    if error:
        CustomEmail.objects.filter(project_id=project_id).update(
            last_send_error=error[:2000], last_send_error_at=now
        )
    else:
        CustomEmail.objects.filter(project_id=project_id).update(
            last_sent_at=now, last_send_error="", last_send_error_at=None
        )
