"""The sign-in forms: Django's, saying "too many attempts" when the limiter refused."""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

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
