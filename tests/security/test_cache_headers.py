"""No cache keeps what a page shows: every response Django renders is ``Cache-Control:
private, no-store`` (the permission matrix checks it on every route for every persona), while
static files keep their caching headers."""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import path, reverse
from django.views.decorators.cache import cache_control

from issues.selectors import upload_email_token
from issues.services import upload_create
from projects.models import Visibility
from servicedesk.http import cacheable
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db
PRIVATE = "private, no-store"


@cache_control(public=True, max_age=600)
def _public_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the same for everyone")


urlpatterns = [
    path("plain/", _public_view),
    path("cacheable/", cacheable(_public_view)),
]


def test_pages_for_anonymous_visitors_are_private_too(client, project, reporter) -> None:
    project.visibility = Visibility.PUBLIC
    project.save()
    issue = IssueFactory(project=project, author=reporter)
    for url in [
        reverse("login"),
        reverse("health"),
        reverse("issue_list", args=[project.full_path]),
        reverse("issue_detail", args=[project.full_path, issue.iid]),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Cache-Control"] == PRIVATE, url


def test_a_file_linked_from_an_email_is_private(client, project, reporter) -> None:
    issue = IssueFactory(project=project, author=reporter)
    upload = upload_create(issue=issue, filename="invoice.pdf", content=b"%PDF-1.4",
                           content_type="application/pdf", uploaded_by=None)  # fmt: skip
    response = client.get(
        reverse("upload_by_token", args=[upload_email_token(upload), upload.filename])
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == PRIVATE


def test_static_files_keep_their_caching_headers(client) -> None:
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert "no-store" not in response["Cache-Control"]
    assert "max-age=" in response["Cache-Control"]


@override_settings(ROOT_URLCONF=__name__)
def test_a_cacheable_view_keeps_its_headers_for_anonymous_visitors_only(client, reporter) -> None:
    assert client.get("/plain/")["Cache-Control"] == PRIVATE
    assert client.get("/cacheable/")["Cache-Control"] == "public, max-age=600"
    client.force_login(reporter)
    assert client.get("/cacheable/")["Cache-Control"] == PRIVATE
