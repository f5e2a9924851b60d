from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


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
