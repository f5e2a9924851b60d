"""Settings > Service Desk > "Sign replies with the agent's name": off by default, saved from
the settings page, and shown in the new-note preview (sender and %{AUTHOR_NAME})."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from projects.models import ServiceDeskSetting
from projects.services import group_create, project_create, service_desk_email_template_set

pytestmark = pytest.mark.django_db
TEMPLATE = "%{NOTE_TEXT}\n\n— %{AUTHOR_NAME}"


def preview(client, project, kind: str) -> str:  # type: ignore[no-untyped-def]
    url = reverse("service_desk_email_preview", args=[project.full_path, kind])
    response = client.post(url, {"text": TEMPLATE}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.content.decode()


def sender_in(html: str) -> str:
    found = re.search(r"<dt>From</dt><dd>(.*?)</dd>", html)
    assert found is not None
    return found.group(1)


def test_off_by_default(db) -> None:  # type: ignore[no-untyped-def]
    project = project_create(group=group_create(path="g"), path="p")
    assert not ServiceDeskSetting.objects.get(project=project).sign_replies_with_agent_name


def test_the_settings_page_offers_it_unchecked(client, project, maintainer) -> None:
    client.force_login(maintainer)
    html = client.get(reverse("service_desk_settings", args=[project.full_path])).content.decode()
    checkbox = re.search(r'<input[^>]*name="sign_replies_with_agent_name"[^>]*>', html)
    assert checkbox is not None
    assert "checked" not in checkbox.group(0)
    assert "Sign replies with the agent&#x27;s name" in html


def test_the_new_note_preview_signs_with_the_editors_name(client, project, maintainer) -> None:
    setting = project.service_desk
    setting.outgoing_name = "ACME Support"
    setting.save()
    client.force_login(maintainer)
    html = preview(client, project, "new_note")
    assert sender_in(html).startswith("ACME Support &lt;")
    assert "<p>— ACME Support</p>" in html

    setting.sign_replies_with_agent_name = True
    setting.save()
    html = preview(client, project, "new_note")
    assert sender_in(html).startswith("Mia at ACME Support &lt;")
    assert "<p>— Mia</p>" in html
    # Only comments are signed: the thank-you still comes from the desk.
    assert sender_in(preview(client, project, "thank_you")).startswith("ACME Support &lt;")


def test_author_name_is_a_known_placeholder(project) -> None:
    service_desk_email_template_set(project=project, kind="new_note", text=TEMPLATE)
    assert ServiceDeskSetting.objects.get(project=project).new_note_template == TEMPLATE
