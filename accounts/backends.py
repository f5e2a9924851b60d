from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from .signin_limit import sign_in_over_limit


class HumanOnlyBackend(ModelBackend):
    """The standard backend, except that bot users (the Support Bot) can never log in, and that
    sign-in attempts are limited (accounts/signin_limit.py).

    The limit lives here, not in a view, because every sign-in form — our /login/, the Django
    admin's, any later one — ends in ``authenticate()``. Over the limit the password is not
    checked: PermissionDenied makes ``authenticate()`` return None at once without asking any
    later backend (so keep this one first). The request is marked so the forms say why and
    the response is a 429 (accounts/forms.py, accounts/middleware.py). Calls without a request
    (management commands, the test client's ``login()``) are not counted: no one outside can
    make them.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if (
            request is not None
            and username is not None
            and password is not None
            and sign_in_over_limit(request, username)
        ):
            request.sign_in_limited = True  # type: ignore[attr-defined]
            raise PermissionDenied
        return super().authenticate(request, username, password, **kwargs)

    def user_can_authenticate(self, user) -> bool:  # type: ignore[no-untyped-def]
        return not getattr(user, "is_bot", False) and super().user_can_authenticate(user)
