"""403, 404 and 500 pages: in the product's layout, saying what happened and where to go, and a
404 that is the same whether an issue is missing or only confidential."""

from __future__ import annotations

import re

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from projects.models import Project

from ..factories import IssueFactory

pytestmark = pytest.mark.django_db

# The parts of a page that change on every render: the masked CSRF token and CSP nonces.
_PER_RENDER = re.compile(
    rb'(name="csrfmiddlewaretoken" value="|name="csrf-token" content="|nonce=")[^"]*"'
)


def _stable(body: bytes) -> bytes:
    return _PER_RENDER.sub(rb"\1\"", body)


@pytest.fixture(autouse=True)
def _production(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False


def test_guest_404_on_confidential_issue_is_the_404_of_a_missing_one(
    client, project: Project, guest, reporter
) -> None:
    secret = IssueFactory(
        project=project, author=reporter, title="Secret refund", confidential=True
    )
    client.force_login(guest)

    hidden = client.get(reverse("issue_detail", args=[project.full_path, secret.iid]))
    missing = client.get(reverse("issue_detail", args=[project.full_path, secret.iid + 100]))

    assert hidden.status_code == missing.status_code == 404
    assert _stable(hidden.content) == _stable(missing.content)
    assert b"Secret refund" not in hidden.content
    assert b"No such issue" not in hidden.content  # the exception's message stays in the logs


def test_404_page_has_the_layout_and_says_what_to_do(client, project: Project, guest) -> None:
    client.force_login(guest)

    response = client.get("/acme/game/-/issues/999/")

    assert response.status_code == 404
    page = response.content.decode()
    assert '<nav aria-label="Account">' in page
    assert '<main id="main">' in page
    assert "<h1>Page not found</h1>" in page
    assert "you do not have access to it" in page
    assert f'href="{reverse("home")}"' in page


def test_403_page_has_the_layout_and_no_exception_message(
    client, project: Project, reporter
) -> None:
    client.force_login(reporter)

    # A Reporter knows the settings exist but may not change them.
    response = client.get(reverse("service_desk_settings", args=[project.full_path]))

    assert response.status_code == 403
    page = response.content.decode()
    assert '<nav aria-label="Account">' in page
    assert "<h1>Access denied</h1>" in page
    assert "ask one of the project's Owners or Maintainers" in page


def test_500_page_renders_without_a_request_context() -> None:
    response = server_error(RequestFactory().get("/"))

    assert response.status_code == 500
    page = response.content.decode()
    assert "<h1>Something went wrong</h1>" in page
    assert 'class="topbar"' in page
    assert f'href="{reverse("home")}"' in page
    assert "{%" not in page
    assert "{{" not in page
