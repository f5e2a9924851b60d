"""Sign-in with a rate limit: password guessing is slowed per account and per client address."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

from servicedesk import ratelimit


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if self._over_limit(request):
            form = self.get_form_class()(request)  # unbound: the password is not even checked
            form.cleaned_data = {}
            form.add_error(None, "Too many sign-in attempts. Wait a few minutes, then try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    @staticmethod
    def _over_limit(request: HttpRequest) -> bool:
        """Every attempt counts, in fixed windows: SERVICEDESK_LOGIN_ATTEMPTS per account and
        client address, five times that per client address (many accounts tried from one)."""
        window = settings.SERVICEDESK_LOGIN_WINDOW
        limit = settings.SERVICEDESK_LOGIN_ATTEMPTS
        address = request.META.get("REMOTE_ADDR", "")
        username = request.POST.get("username", "").strip().lower()[:150]
        per_account = ratelimit.hit(f"login:{address}:{username}", limit=limit, window=window)
        per_address = ratelimit.hit(f"login:{address}", limit=limit * 5, window=window)
        return per_account or per_address
