from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation


def sign_in_limit_status(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """A sign-in page shown again because the limiter refused the attempt answers 429 (Too Many
    Requests), whichever view showed it: ours or the Django admin's."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if getattr(request, "sign_in_limited", False) and response.status_code == 200:
            response.status_code = 429
        return response

    return middleware


def user_language(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """A signed-in person sees the product in their profile's language; without one (or signed
    out) LocaleMiddleware's choice from the browser stands. After AuthenticationMiddleware."""

    def middleware(request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        language = getattr(user, "language", "") if user is not None else ""
        if language and translation.check_for_language(language):
            translation.activate(language)
            request.LANGUAGE_CODE = translation.get_language()  # type: ignore[attr-defined]
        return get_response(request)

    return middleware
