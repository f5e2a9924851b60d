"""Who is calling the API, what their token allows, and how often they may call.

A personal access token comes as ``PRIVATE-TOKEN: <token>`` or ``Authorization: Bearer
<token>`` (GitLab's two ways). A browser's session works too, with Django's CSRF check on
writes (DRF's SessionAuthentication, listed after this class).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from servicedesk.client_ip import client_ip
from servicedesk.ratelimit import hit

from .models import TOKEN_PREFIX, PersonalAccessToken
from .selectors import token_for_secret
from .services import token_touch

INVALID = "Invalid token: it is unknown, revoked or expired, or its user is blocked."


def _token_from(request: Request) -> str | None:
    token = request.headers.get("Private-Token")
    if token is not None:
        return token.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    return None


class AccessTokenAuthentication(BaseAuthentication):
    """A personal access token: ``request.auth`` is the token, ``request.user`` its owner.

    A token that was sent and does not work (unknown, revoked, expired, its user deactivated)
    is a 401 — never a silent fall-back to anonymous, which would answer 404 for private
    things and leave the client guessing."""

    def authenticate(self, request: Request) -> tuple[Any, PersonalAccessToken] | None:
        raw = _token_from(request)
        if raw is None:
            return None
        if not raw.startswith(TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed(INVALID)
        token = token_for_secret(raw)
        if token is None or not token.active:
            raise exceptions.AuthenticationFailed(INVALID)
        user = token.user
        if not user.is_active or user.is_bot:
            raise exceptions.AuthenticationFailed(INVALID)
        token_touch(token)
        return user, token

    def authenticate_header(self, request: Request) -> str:
        # Present, so DRF answers 401 (not 403) to requests that need a sign-in.
        return 'Bearer realm="api"'


class TokenScopeAllows(BasePermission):
    """A ``read_api`` token reads only: any other method is a 403 (GitLab's insufficient_scope),
    before anything else is looked at."""

    message = "Insufficient scope: this token has read_api; writing needs the api scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if isinstance(token, PersonalAccessToken) and request.method not in SAFE_METHODS:
            return token.can_write
        return True


class RequestsPerMinute(BaseThrottle):
    """SERVICEDESK_API_REQUESTS_PER_MINUTE per token (each token its own budget), else per
    signed-in user, else per client address; counted in Redis like the other limits."""

    window = 60

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = settings.SERVICEDESK_API_REQUESTS_PER_MINUTE
        if limit <= 0:
            return True
        if isinstance(request.auth, PersonalAccessToken):
            key = f"api:token:{request.auth.pk}"
        elif request.user.is_authenticated:
            key = f"api:user:{request.user.pk}"
        else:
            key = f"api:ip:{client_ip(request)}"
        return not hit(key, limit=limit, window=self.window)

    def wait(self) -> float:
        return float(self.window - int(time.time()) % self.window)
