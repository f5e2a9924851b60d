"""Settings > Webhooks: add, edit, delete; the log; Test and Resend through the real worker."""

from __future__ import annotations

import pytest
from django.urls import reverse

from issues.services import issue_create
from projects.models import Role
from tests.factories import ProjectFactory, member
from tests.harness.services import wait_until
from webhooks.models import Webhook, WebhookDelivery

from .receiver import Receiver

pytestmark = pytest.mark.django_db
SECRET = "page-secret-0123456789"


def form(url: str, **extra: str) -> dict[str, str]:
    return {"url": url, "issue_events": "on", "enabled": "on", "verify_ssl": "on", **extra}


def test_maintainer_adds_a_hook_and_the_secret_is_never_shown_again(
    client, project, maintainer, receiver: Receiver
) -> None:
    client.force_login(maintainer)
    url = reverse("webhook_list", args=[project.full_path])
    response = client.post(url, form(receiver.url, secret=SECRET, note_events="on"))
    assert response.status_code == 302
    hook = Webhook.objects.get()
    assert (hook.url, hook.secret, hook.issue_events, hook.note_events) == (
        receiver.url, SECRET, True, True,
    )  # fmt: skip
    assert not hook.confidential_issue_events
    listing = client.get(url)
    assert receiver.url in listing.content.decode()
    edit_url = reverse("webhook_edit", args=[project.full_path, hook.pk])
    page = client.get(edit_url).content.decode()
    assert SECRET not in page
    assert "A secret token is set" in page

    # Saving without a secret keeps it; "remove" removes it.
    client.post(edit_url, form(receiver.url))
    hook.refresh_from_db()
    assert hook.secret == SECRET
    assert not hook.note_events
    client.post(edit_url, form(receiver.url, clear_secret="on"))
    hook.refresh_from_db()
    assert hook.secret == ""


def test_loopback_url_is_refused_on_the_form_without_the_setting(
    client, project, maintainer, receiver, settings
) -> None:
    settings.SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE = []
    client.force_login(maintainer)
    response = client.post(reverse("webhook_list", args=[project.full_path]), form(receiver.url))
    assert response.status_code == 400
    assert "loopback" in response.content.decode()
    assert not Webhook.objects.exists()


def test_delete_removes_the_hook_and_its_log(client, project, maintainer, receiver) -> None:
    client.force_login(maintainer)
    client.post(reverse("webhook_list", args=[project.full_path]), form(receiver.url))
    hook = Webhook.objects.get()
    issue_create(project=project, author=maintainer, title="Logged")
    assert WebhookDelivery.objects.count() == 1
    response = client.post(reverse("webhook_delete", args=[project.full_path, hook.pk]))
    assert response.status_code == 302
    assert not Webhook.objects.exists()
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_test_and_resend_buttons_send_through_the_worker(
    client, project, maintainer, receiver: Receiver, celery_worker
) -> None:
    client.force_login(maintainer)
    client.post(reverse("webhook_list", args=[project.full_path]), form(receiver.url))
    hook = Webhook.objects.get()
    response = client.post(reverse("webhook_test", args=[project.full_path, hook.pk]))
    edit_url = reverse("webhook_edit", args=[project.full_path, hook.pk])
    assert response.status_code == 302
    assert response["Location"] == edit_url
    [test] = receiver.wait_for(1)
    assert test.headers["X-Gitlab-Event"] == "Issue Hook"
    assert test.headers["X-ServiceDesk-Event"] == "test"
    assert test.json["object_attributes"]["title"] == "Test issue from Service Desk"
    delivery = WebhookDelivery.objects.get()
    wait_until(lambda: WebhookDelivery.objects.filter(status="sent").exists(), 10, "the log")
    log = client.get(edit_url).content.decode()
    assert "Sent" in log
    assert ">200<" in log

    detail = reverse("webhook_delivery", args=[project.full_path, hook.pk, delivery.pk])
    page = client.get(detail).content.decode()
    assert "Test issue from Service Desk" in page  # the request body
    assert "{&quot;ok&quot;: true}" in page  # the response body
    client.post(reverse("webhook_delivery_resend",
                        args=[project.full_path, hook.pk, delivery.pk]))  # fmt: skip
    first, again = receiver.wait_for(2)
    assert again.body == first.body
    assert again.headers["X-ServiceDesk-Delivery"] != first.headers["X-ServiceDesk-Delivery"]
    wait_until(lambda: WebhookDelivery.objects.filter(status="sent").count() == 2, 10, "resend")


def test_another_projects_hook_is_not_found(client, project, maintainer, receiver) -> None:
    other = ProjectFactory(group=project.group, path="other")
    otto = member(other, Role.MAINTAINER, "otto")
    client.force_login(maintainer)
    client.post(reverse("webhook_list", args=[project.full_path]), form(receiver.url))
    hook = Webhook.objects.get()
    client.force_login(otto)
    response = client.get(reverse("webhook_edit", args=[other.full_path, hook.pk]))
    assert response.status_code == 404
