from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse


def anonymous_404_to_login(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """Send anonymous visitors to the login page instead of a 404.

    Whether the object is missing or merely private, the answer is the same redirect, so it
    tells an outsider nothing; signed-in users who cannot see the object still get a 404.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except Http404:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            raise

    return wrapper


# Pages show customer data (names, addresses, what they wrote): no shared cache may keep them,
# and no browser may store them on disk. Static files never get here (WhiteNoise answers them
# first, with its own long-lived caching headers).
PRIVATE_CACHE_CONTROL = "private, no-store"


def cacheable(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Opt a view out of ``PrivateCacheMiddleware`` for anonymous visitors: their responses
    keep whatever Cache-Control the view sets. A signed-in user's response stays private."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.cacheable = True  # type: ignore[attr-defined]
        return response

    return wrapper


class PrivateCacheMiddleware:
    """``Cache-Control: private, no-store`` on every response Django renders, unless the view
    is ``cacheable`` and the visitor anonymous."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(response, "cacheable", False) and not _signed_in(request):
            return response
        response["Cache-Control"] = PRIVATE_CACHE_CONTROL
        return response


def _signed_in(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


def wants_results_only(request: HttpRequest) -> bool:
    """A list's filter form sent by htmx: only the results are swapped in. (Restoring a page
    from history after a cache miss asks for the whole page.)"""
    headers = request.headers
    return bool(
        headers.get("HX-Request")
        and not headers.get("HX-Boosted")
        and not headers.get("HX-History-Restore-Request")
    )
