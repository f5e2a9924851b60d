"""A URLconf for tests/servicedesk/test_statement_timeout.py: views that run statements on the
request's own connection, as any page's queries do."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def slow(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [float(request.GET.get("seconds", "2"))])
    return HttpResponse("done")


def limit(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return HttpResponse(cursor.fetchone()[0])


urlpatterns = [path("slow/", slow), path("limit/", limit), path("", include("servicedesk.urls"))]
