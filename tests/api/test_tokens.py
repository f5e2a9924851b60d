"""Personal access tokens: how they are sent, what they allow, when they stop working, the
rate limit, and the profile page that makes and revokes them."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.selectors import support_bot
from api.models import PersonalAccessToken
from api.services import LAST_USED_RESOLUTION, token_create, token_revoke
from issues.models import Issue
from tests.factories import PASSWORD, IssueFactory

pytestmark = pytest.mark.django_db


def make_token(user: User, *scopes: str, days: int = 30) -> str:
    expiry = timezone.now().date() + timedelta(days=days)
    return token_create(user=user, name="script", scopes=list(scopes), expires_at=expiry).secret


def issues_url(project) -> str:  # type: ignore[no-untyped-def]
    return f"/api/v4/projects/{project.pk}/issues"


def post_json(client: Client, url: str, data: dict, **headers: str):  # type: ignore[no-untyped-def,type-arg]
    return client.post(url, json.dumps(data), content_type="application/json", headers=headers)


def test_token_works_as_private_token_header_and_as_bearer(client, reporter) -> None:
    secret = make_token(reporter, "read_api")
    for headers in ({"PRIVATE-TOKEN": secret}, {"Authorization": f"Bearer {secret}"}):
        response = client.get("/api/v4/user", headers=headers)
        assert response.status_code == 200, headers
        assert response.json()["username"] == "bob"


def test_without_a_token_the_caller_is_anonymous(client, reporter) -> None:
    assert client.get("/api/v4/user").status_code == 401
    assert client.get("/api/v4/projects").json() == []  # a private project is not listed


def test_token_is_stored_only_as_its_sha256_and_starts_with_the_prefix(reporter) -> None:
    secret = make_token(reporter, "api")
    assert secret.startswith("sdpat-")
    assert len(secret) >= 6 + 32
    stored = PersonalAccessToken.objects.get(user=reporter)
    assert stored.digest == hashlib.sha256(secret.encode()).hexdigest()
    row = PersonalAccessToken.objects.filter(pk=stored.pk).values().get()
    assert secret not in json.dumps(row, default=str)


@pytest.mark.parametrize(
    "headers",
    [
        {"PRIVATE-TOKEN": "sdpat-not-a-real-token-at-all-000000"},
        {"PRIVATE-TOKEN": "glpat-somebody-elses-product"},
        {"Authorization": "Bearer sdpat-not-a-real-token-at-all-000000"},
    ],
)
def test_unknown_token_is_401_never_anonymous(client, project, headers) -> None:
    project.visibility = "public"
    project.save()
    response = client.get(issues_url(project), headers=headers)
    assert response.status_code == 401
    assert response.json()["message"].startswith("401")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_refused(client, reporter) -> None:
    secret = make_token(reporter, "api", days=1)
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 200
    # The token works through the day before its expiry date.
    PersonalAccessToken.objects.update(expires_at=timezone.now().date())
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 401


def test_revoked_token_is_refused(client, reporter) -> None:
    secret = make_token(reporter, "api")
    token = PersonalAccessToken.objects.get(user=reporter)
    assert token_revoke(token=token) is True
    assert token_revoke(token=token) is False  # already
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 401


def test_token_of_a_deactivated_user_is_refused(client, reporter) -> None:
    secret = make_token(reporter, "api")
    User.objects.filter(pk=reporter.pk).update(is_active=False)
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 401


def test_bots_cannot_have_tokens() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        make_token(support_bot(), "api")


def test_read_api_token_cannot_write(client, project, reporter) -> None:
    secret = make_token(reporter, "read_api")
    issue = IssueFactory(project=project, author=reporter)
    url = f"{issues_url(project)}/{issue.iid}"
    assert client.get(url, headers={"PRIVATE-TOKEN": secret}).status_code == 200
    response = client.put(
        url,
        json.dumps({"state_event": "close"}),
        content_type="application/json",
        headers={"PRIVATE-TOKEN": secret},
    )
    assert response.status_code == 403
    assert "scope" in response.json()["message"]
    assert Issue.objects.get(pk=issue.pk).state == "opened"
    writer = make_token(reporter, "api")
    response = client.put(
        url,
        json.dumps({"state_event": "close"}),
        content_type="application/json",
        headers={"PRIVATE-TOKEN": writer},
    )
    assert response.status_code == 200
    assert Issue.objects.get(pk=issue.pk).state == "closed"


def test_last_used_is_written_at_most_once_a_minute(client, reporter) -> None:
    secret = make_token(reporter, "read_api")
    token = PersonalAccessToken.objects.get(user=reporter)
    assert token.last_used_at is None
    client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret})
    first = PersonalAccessToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret})
    assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at == first
    earlier = first - LAST_USED_RESOLUTION - timedelta(seconds=1)
    PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=earlier)
    client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret})
    assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at > first


def test_each_token_has_its_own_rate_limit(
    client, reporter, settings, redis_cache_flushed, rate_window_frozen
) -> None:
    settings.SERVICEDESK_API_REQUESTS_PER_MINUTE = 3
    limited, other = make_token(reporter, "read_api"), make_token(reporter, "read_api")
    answers = [
        client.get("/api/v4/user", headers={"PRIVATE-TOKEN": limited}).status_code for _ in range(4)
    ]
    assert answers == [200, 200, 200, 429]
    refused = client.get("/api/v4/user", headers={"PRIVATE-TOKEN": limited})
    assert 0 < int(refused["Retry-After"]) <= 60
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": other}).status_code == 200


def test_session_works_and_writes_need_the_csrf_token(project, reporter) -> None:
    issue = IssueFactory(project=project, author=reporter)
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username="bob", password=PASSWORD)
    url = f"{issues_url(project)}/{issue.iid}/notes"
    assert browser.get(url).status_code == 200
    assert post_json(browser, url, {"body": "no token"}).status_code == 403
    browser.get(reverse("personal_access_tokens"))  # sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    response = post_json(browser, url, {"body": "with token"}, **{"X-CSRFToken": csrf})
    assert response.status_code == 201
    assert [n.body for n in issue.notes.filter(system=False)] == ["with token"]


# --- The profile page ----------------------------------------------------------------------------


def test_profile_page_creates_shows_once_lists_and_revokes(client, reporter, outsider) -> None:
    client.force_login(reporter)
    page = reverse("personal_access_tokens")
    expiry = (timezone.now().date() + timedelta(days=10)).isoformat()
    response = client.post(page, {"name": "CI", "scopes": ["api"], "expires_at": expiry})
    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret.startswith("sdpat-")
    assert secret.encode() in response.content
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 200
    listing = client.get(page)
    assert b"CI" in listing.content
    assert secret.encode() not in listing.content
    token = PersonalAccessToken.objects.get(user=reporter)
    # Another user cannot revoke it (404), its owner can.
    client.force_login(outsider)
    revoke = reverse("personal_access_token_revoke", args=[token.pk])
    assert client.post(revoke).status_code == 404
    client.force_login(reporter)
    assert client.post(revoke).status_code == 302
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 401


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "scopes": ["api"], "days": 5}, "name"),
        ({"name": "x", "scopes": [], "days": 5}, "scopes"),
        ({"name": "x", "scopes": ["api"], "days": 0}, "expires_at"),
        ({"name": "x", "scopes": ["api"], "days": 366}, "expires_at"),
    ],
)
def test_profile_page_refuses_a_bad_token(client, reporter, data, field) -> None:
    client.force_login(reporter)
    expiry = (timezone.now().date() + timedelta(days=data.pop("days"))).isoformat()
    response = client.post(reverse("personal_access_tokens"), {**data, "expires_at": expiry})
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert not PersonalAccessToken.objects.exists()
