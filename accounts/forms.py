"""The account forms: sign-in (Django's, saying "too many attempts" when the limiter refused),
password reset, profile, sign-up, and the admin area's new user."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from .services import password_reset_email_record
from .signin_limit import TOO_MANY_ATTEMPTS


class SignInLimitMessage:
    """Over the limit the backend refused without looking at the password (accounts/backends.py);
    say that, instead of "wrong password"."""

    def get_invalid_login_error(self) -> ValidationError:
        if getattr(getattr(self, "request", None), "sign_in_limited", False):
            return ValidationError(TOO_MANY_ATTEMPTS, code="too_many_attempts")
        return super().get_invalid_login_error()  # type: ignore[misc,no-any-return]


class SignInForm(SignInLimitMessage, AuthenticationForm):
    pass


class AdminSignInForm(SignInLimitMessage, AdminAuthenticationForm):
    pass


class PasswordResetRequestForm(PasswordResetForm):
    """Django's form, its email recorded in the outbox instead of sent from the request."""

    def send_mail(  # type: ignore[override]
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        path = reverse("password_reset_confirm", args=[context["uid"], context["token"]])
        password_reset_email_record(user=context["user"], url=settings.SITE_URL + path)


class ProfileForm(forms.Form):
    name = forms.CharField(label=_("Display name"), max_length=255, required=False)
    language = forms.ChoiceField(
        label=_("Language"),
        required=False,
        choices=[("", _("As my browser asks")), *settings.LANGUAGES],
        help_text=_("Of these pages and of the emails the team gets from Service Desk."),
    )


class EmailChangeForm(forms.Form):
    email = forms.EmailField(
        label=_("New email address"),
        max_length=254,
        help_text=_("We send a link to the new address; it takes over once you follow it."),
    )


class SignUpForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150)
    name = forms.CharField(label=_("Display name"), max_length=255, required=False)
    email = forms.EmailField(label=_("Email address"), max_length=254)
    password1 = forms.CharField(label=_("Password"), widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}), strip=False)  # fmt: skip
    password2 = forms.CharField(label=_("Password again"), widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}), strip=False)  # fmt: skip

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", _("The two passwords differ."))
        return cleaned


class UserCreateForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150)
    name = forms.CharField(label=_("Display name"), max_length=255, required=False)
    email = forms.EmailField(label=_("Email address"), max_length=254)
    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty to email an invitation: they choose their own password."),
    )
    admin = forms.BooleanField(label=_("Admin"), required=False)
