"""Accounts: creating and inviting people, admins, profiles, and the emails that go with them.

Every email (invitation, password reset, address confirmation) is recorded in the outbox in
the transaction of its cause and sent by the worker after commit (issues.emails).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from issues.emails import account_email_record
from projects import permissions

from .models import User

if TYPE_CHECKING:
    from projects.permissions import AnyUser


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """Django's password reset token under its own salt: valid for PASSWORD_RESET_TIMEOUT,
    and spent once the invited person has set a password (the hash covers it)."""

    key_salt = "accounts.services.InvitationTokenGenerator"


invitation_tokens = InvitationTokenGenerator()
EMAIL_CHANGE_SALT = "accounts.email-change"
_USERNAME_CHARS = re.compile(r"[^\w.@+-]")


def _days() -> str:
    return str(max(1, settings.PASSWORD_RESET_TIMEOUT // 86400))


def _uid(user: User) -> str:
    return urlsafe_base64_encode(force_bytes(user.pk))


def _clean_email(email: str, field: str = "email") -> str:
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({field: "Enter a valid email address."}) from None
    return email


def username_for_email(email: str) -> str:
    """A free username from the address's local part: erin@x → erin (erin2 if taken)."""
    base = _USERNAME_CHARS.sub("", email.partition("@")[0])[:140] or "user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def _check_new_username(username: str) -> str:
    username = username.strip()
    try:
        User._meta.get_field("username").run_validators(username)
    except ValidationError as error:
        raise ValidationError({"username": error.messages[0]}) from None
    if not username:
        raise ValidationError({"username": _("Choose a username.")})
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError(
            {"username": _("The username %(username)s is taken.") % {"username": repr(username)}}
        )
    return username


@transaction.atomic
def user_create(
    *,
    actor: AnyUser,
    username: str,
    email: str,
    name: str = "",
    password: str = "",
    admin: bool = False,
) -> User:
    """An admin creates an account. Without a password the person gets an invitation email
    to choose one (the admin never knows it)."""
    if not permissions.can_administer_instance(actor):
        raise PermissionDenied
    if admin and not permissions.can_change_admin(actor):
        raise PermissionDenied("Only superusers make admins.")
    username = _check_new_username(username)
    email = _clean_email(email)
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": _("Someone already has an account with this address.")})
    user = User(username=username, email=email, name=name.strip())
    user.is_staff = user.is_superuser = admin
    if password:
        try:
            password_validation.validate_password(password, user)
        except ValidationError as error:
            raise ValidationError({"password": error.messages}) from None
        user.set_password(password)
        user.save()
    else:
        user.set_unusable_password()
        user.save()
        invitation_send(user=user, inviter=actor)
    return user


def invitation_send(*, user: User, inviter: AnyUser, where: str = "") -> None:
    """The invitation email: a link to choose a password (InvitationTokenGenerator)."""
    url = settings.SITE_URL + reverse(
        "invitation_accept", args=[_uid(user), invitation_tokens.make_token(user)]
    )
    # In the inviter's language: the invited person has chosen none yet.
    language = getattr(inviter, "email_language", "") or settings.LANGUAGE_CODE
    with translation.override(language):
        inviter_name = getattr(inviter, "display_name", "") or _("An administrator")
        subject = _("You are invited to Service Desk")
        joining = _(" to join %(where)s") % {"where": where} if where else ""
    account_email_record(
        recipient=user.email,
        subject=subject,
        template="account_invitation",
        language=language,
        values={
            "INVITER": inviter_name,
            "WHERE": joining,
            "USERNAME": user.username,
            "URL": url,
            "DAYS": _days(),
        },
    )


@transaction.atomic
def invitation_resend(*, actor: AnyUser, user: User) -> None:
    """Send a new invitation to someone who has not chosen a password yet."""
    if not permissions.can_administer_instance(actor):
        raise PermissionDenied
    if user.has_usable_password() or not user.is_active or user.is_bot:
        raise ValidationError(_("Only people who have not chosen a password yet are invited."))
    invitation_send(user=user, inviter=actor)


@transaction.atomic
def invited_user_for_email(*, inviter: AnyUser, email: str, where: str) -> tuple[User, bool]:
    """The active account with this address, or a new one, invited by email to choose a
    password. Returns (user, invited?)."""
    email = _clean_email(email)
    existing = User.objects.filter(email__iexact=email, is_bot=False).order_by("pk").first()
    if existing is not None:
        if not existing.is_active:
            raise ValidationError({"email": _("The account with this address is deactivated.")})
        return existing, False
    user = User(username=username_for_email(email), email=email)
    user.set_unusable_password()
    user.save()
    invitation_send(user=user, inviter=inviter, where=where)
    return user, True


@transaction.atomic
def user_set_active(*, actor: AnyUser, user: User, active: bool) -> User:
    """Deactivate (cannot sign in, keeps everything they wrote) or reactivate an account."""
    if not permissions.can_administer_instance(actor) or user.is_bot:
        raise PermissionDenied
    if (user.is_staff or user.is_superuser) and not permissions.can_change_admin(actor):
        raise PermissionDenied("Only superusers change admins.")
    if user.pk == actor.pk and not active:
        raise ValidationError(_("You cannot deactivate yourself."))
    user.is_active = active
    user.save(update_fields=["is_active"])
    return user


@transaction.atomic
def user_set_admin(*, actor: AnyUser, user: User, admin: bool) -> User:
    """An admin is staff and superuser: the admin area, the instance ledger, every project."""
    if not permissions.can_change_admin(actor) or user.is_bot:
        raise PermissionDenied("Only superusers make or unmake admins.")
    if user.pk == actor.pk and not admin:
        raise ValidationError(_("You cannot remove your own admin rights."))
    user.is_staff = user.is_superuser = admin
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


@transaction.atomic
def profile_update(*, user: User, name: str, language: str | None = None) -> User:
    """Display name and (unless None: unchanged) language, "" for the browser's."""
    name = " ".join(name.split())
    if len(name) > 255:
        raise ValidationError({"name": _("At most 255 characters.")})
    if language is not None and language and language not in dict(settings.LANGUAGES):
        raise ValidationError({"language": _("Choose one of the languages offered.")})
    user.name = name
    fields = ["name"]
    if language is not None:
        user.language = language
        fields.append("language")
    user.save(update_fields=fields)
    return user


@transaction.atomic
def email_change_request(*, user: User, email: str) -> None:
    """Send a confirmation link to the new address; the account keeps its address until it
    is followed (signed: who, from which address, to which)."""
    email = _clean_email(email)
    if email.lower() == user.email.lower():
        raise ValidationError({"email": _("This is already your address.")})
    if User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
        raise ValidationError({"email": _("Someone else has an account with this address.")})
    token = signing.dumps([user.pk, user.email, email], salt=EMAIL_CHANGE_SALT)
    with translation.override(user.email_language):
        subject = _("Confirm your new email address")
    account_email_record(
        recipient=email,
        subject=subject,
        template="account_email_confirm",
        language=user.email_language,
        values={
            "NAME": user.display_name,
            "USERNAME": user.username,
            "URL": settings.SITE_URL + reverse("email_confirm", args=[token]),
            "DAYS": _days(),
        },
    )


def email_change_read(token: str) -> tuple[User, str] | None:
    """The account and new address a confirmation link names, if the link is genuine, not
    expired, and the account still has the address it had when it was asked."""
    try:
        pk, old, new = signing.loads(
            token, salt=EMAIL_CHANGE_SALT, max_age=settings.PASSWORD_RESET_TIMEOUT
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    user = User.objects.filter(pk=pk, is_active=True, email=old).first()
    return (user, new) if user is not None else None


@transaction.atomic
def email_change_confirm(*, token: str) -> User | None:
    found = email_change_read(token)
    if found is None:
        return None
    user, email = found
    if User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
        return None
    user.email = email
    user.save(update_fields=["email"])
    return user


def password_reset_email_record(*, user: User, url: str) -> None:
    with translation.override(user.email_language):
        subject = _("Reset your Service Desk password")
    account_email_record(
        recipient=user.email,
        subject=subject,
        template="account_password_reset",
        language=user.email_language,
        values={
            "NAME": user.display_name,
            "USERNAME": user.username,
            "URL": url,
            "DAYS": _days(),
        },
    )


@transaction.atomic
def signup(*, username: str, email: str, password: str, name: str = "") -> User:
    """Self-service sign-up (SERVICEDESK_SIGNUP_ENABLED)."""
    if not settings.SERVICEDESK_SIGNUP_ENABLED:
        raise PermissionDenied
    username = _check_new_username(username)
    email = _clean_email(email)
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": _("Someone already has an account with this address.")})
    user = User(username=username, email=email, name=name.strip())
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({"password1": error.messages}) from None
    user.set_password(password)
    user.save()
    return user
