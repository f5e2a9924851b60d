"""Sign-in, sign-up, password reset, invitations and the profile page.

The limit on sign-in attempts is the authentication backend's (accounts/backends.py); password
reset requests have their own (SERVICEDESK_PASSWORD_RESET_*), counted like it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from servicedesk import ratelimit
from servicedesk.http import anonymous_404_to_login

from .forms import EmailChangeForm, PasswordResetRequestForm, ProfileForm, SignInForm, SignUpForm
from .services import (
    email_change_confirm,
    email_change_read,
    email_change_request,
    invitation_tokens,
    profile_update,
    signup,
)
from .signin_limit import address_key, username_key

TOO_MANY_RESETS = gettext_lazy("Too many password reset requests. Wait a while, then try again.")


class LoginView(auth_views.LoginView):
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "signup": settings.SERVICEDESK_SIGNUP_ENABLED}


def _reset_over_limit(request: HttpRequest, email: str) -> bool:
    """One request counted per client address and per address asked for."""
    limit = settings.SERVICEDESK_PASSWORD_RESET_ATTEMPTS
    window = settings.SERVICEDESK_PASSWORD_RESET_WINDOW
    keys = [f"reset:{address_key(request)}", f"reset-email:{username_key(email)}"]
    return any(ratelimit.hit_many(keys, limit=limit, window=window))


class PasswordResetView(auth_views.PasswordResetView):
    """Django's view: the same answer whether an account has the address or not; the email
    goes through the outbox (PasswordResetRequestForm)."""

    form_class = PasswordResetRequestForm
    template_name = "registration/password_reset_form.html"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form: PasswordResetRequestForm) -> HttpResponse:  # type: ignore[override]
        if _reset_over_limit(self.request, form.cleaned_data["email"]):
            form.add_error(None, TOO_MANY_RESETS)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        with transaction.atomic():
            return super().form_valid(form)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("login")
    title = gettext_lazy("Choose a new password")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, _("Your password is changed. Sign in with it."))
        return super().form_valid(form)


class InvitationAcceptView(PasswordResetConfirmView):
    """The link in an invitation: the invited person chooses their password (a token of its
    own kind, spent once a password is set, expiring after PASSWORD_RESET_TIMEOUT)."""

    token_generator = invitation_tokens
    template_name = "registration/invitation_accept.html"
    title = gettext_lazy("Welcome: choose your password")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(
            self.request,
            _("Your password is set. Sign in as %(username)s.") % {"username": form.user.username},
        )
        return super(PasswordResetConfirmView, self).form_valid(form)


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("profile")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, _("Your password is changed."))
        return super().form_valid(form)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    """Self-service accounts, when the instance allows them (SERVICEDESK_SIGNUP_ENABLED)."""
    if not settings.SERVICEDESK_SIGNUP_ENABLED:
        raise Http404("Sign-up is off")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if ratelimit.hit(f"signup:{address_key(request)}", limit=10, window=3600):
            form.add_error(None, _("Too many new accounts from your address. Try again later."))
            return render(request, "registration/signup.html", {"form": form}, status=429)
        data = form.cleaned_data
        try:
            user = signup(username=data["username"], email=data["email"],
                          password=data["password1"], name=data["name"])  # fmt: skip
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request,
                _("Your account is ready. Sign in as %(username)s.") % {"username": user.username},
            )
            return redirect("login")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/signup.html", {"form": form}, status=status)


def _render_profile(
    request: HttpRequest,
    form: ProfileForm | None = None,
    email_form: EmailChangeForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "form": form
        or ProfileForm(
            initial={"name": request.user.name, "language": request.user.language}  # type: ignore[union-attr]
        ),
        "email_form": email_form or EmailChangeForm(),
    }
    return render(request, "accounts/profile.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _render_profile(request)
    form = ProfileForm(request.POST)
    if form.is_valid():
        try:
            profile_update(
                user=request.user,  # type: ignore[arg-type]
                name=form.cleaned_data["name"],
                # A form without the field (an older page) leaves the language as it is.
                language=form.cleaned_data["language"] if "language" in request.POST else None,
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            # Said in the language just chosen (the browser's, if that was "as my browser").
            translation.activate(
                request.user.language  # type: ignore[union-attr]
                or translation.get_language_from_request(request)
            )
            messages.success(request, _("Your profile is saved."))
            return redirect("profile")
    return _render_profile(request, form=form, status=400)


@login_required
@require_POST
def profile_email(request: HttpRequest) -> HttpResponse:
    form = EmailChangeForm(request.POST)
    if form.is_valid():
        try:
            email_change_request(user=request.user, email=form.cleaned_data["email"])  # type: ignore[arg-type]
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request,
                f"We sent a link to {form.cleaned_data['email']}: follow it to use that address.",
            )
            return redirect("profile")
    return _render_profile(request, email_form=form, status=400)


@require_http_methods(["GET", "POST"])
def email_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks (mail scanners follow links); POST changes the address. The signed link is
    the proof: no sign-in needed, as on another device."""
    found = email_change_read(token)
    if found is None:
        return render(request, "accounts/email_confirm.html", {"invalid": True}, status=404)
    if request.method == "POST":
        user = email_change_confirm(token=token)
        if user is None:
            return render(request, "accounts/email_confirm.html", {"invalid": True}, status=404)
        return render(request, "accounts/email_confirm.html", {"done": True, "account": user})
    user, email = found
    return render(request, "accounts/email_confirm.html", {"account": user, "email": email})
