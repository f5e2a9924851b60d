"""Sign-in; the limit on attempts is the authentication backend's (accounts/backends.py)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views

from .forms import SignInForm


class LoginView(auth_views.LoginView):
    authentication_form = SignInForm
    redirect_authenticated_user = True
