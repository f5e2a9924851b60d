"""Old addresses of renamed groups and projects redirect to the new ones (GitLab's redirect
routes): a 404 for a GET whose path starts with a former full path becomes a redirect to the
same page under the current path — for those who may read the project there, so a private
project's new name is told to no one else."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import Resolver404, resolve

from .models import Project, RedirectRoute
from .permissions import can_read_project


def redirect_renamed(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if response.status_code != 404 or request.method not in ("GET", "HEAD"):
            return response
        target = renamed_location(request)
        return HttpResponseRedirect(target) if target else response

    return middleware


def renamed_location(request: HttpRequest) -> str | None:
    path = request.path
    if path.startswith("/-/") or len(path) > 2000:
        return None
    head, marker, tail = path.strip("/").partition("/-/")
    parts = head.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    routes = RedirectRoute.objects.filter(path__in=prefixes).select_related("group", "project")
    route = max(routes, key=lambda r: len(r.path), default=None)
    if route is None:
        return None
    new_path = "/" + route.target_full_path + head[len(route.path) :]
    new_path += f"/-/{tail}" if marker else ""
    if path.endswith("/"):
        new_path = new_path.rstrip("/") + "/"
    try:
        match = resolve(new_path)
    except Resolver404:
        return None
    project = Project.objects.filter(full_path=match.kwargs.get("full_path", "")).first()
    if project is None or not can_read_project(request.user, project):
        return None
    query = request.META.get("QUERY_STRING", "")
    return quote(new_path) + (f"?{query}" if query else "")
