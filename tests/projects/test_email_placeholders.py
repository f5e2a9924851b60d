"""A mistyped %{PLACEHOLDER} in an email template: named in the editor, highlighted in the
preview, refused on save (editor, service and Django admin alike) — never sent to customers."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from projects.models import ServiceDeskSetting
from projects.placeholders import (
    EMAIL_PLACEHOLDERS,
    suggestion,
    unknown_placeholders,
    validate_email_template,
)
from projects.selectors import email_template_default
from projects.services import EMAIL_TEMPLATE_KINDS, service_desk_email_template_set
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
MISTYPED = "Your ticket: %{ISSUE_IDD}. Stop: %{UNSUBSCRIBE_URL}"


def editor_url(project, kind: str = "thank_you") -> str:  # type: ignore[no-untyped-def]
    return reverse("service_desk_email_template", args=[project.full_path, kind])


def preview_url(project, kind: str = "thank_you") -> str:  # type: ignore[no-untyped-def]
    return reverse("service_desk_email_preview", args=[project.full_path, kind])


def test_saving_a_mistyped_placeholder_is_refused_naming_it(client, project, maintainer) -> None:
    client.force_login(maintainer)
    response = client.post(editor_url(project), {"text": MISTYPED})
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(r'<div class="field-errors" id="id_text_error">(.*?)</div>', html, re.S)
    assert error is not None
    assert "Unknown placeholder: %{ISSUE_IDD} (did you mean %{ISSUE_ID}?)" in error.group(1)
    assert f"{MISTYPED}</textarea>" in html  # the text is kept for fixing
    assert ServiceDeskSetting.objects.get(project=project).thank_you_template == ""


def test_every_unknown_placeholder_is_named(project) -> None:
    text = "%{issue_id} %{ ISSUE PATH } %{ISSUE-URL} %{FOO} %{FOO} %{NOTE_TEXT} %{ }"
    with pytest.raises(ValidationError) as raised:
        service_desk_email_template_set(project=project, kind="new_note", text=text)
    [message] = raised.value.messages
    assert message.startswith(
        "Unknown placeholders: %{issue_id} (did you mean %{ISSUE_ID}?), "
        "%{ ISSUE PATH } (did you mean %{ISSUE_PATH}?), "
        "%{ISSUE-URL} (did you mean %{ISSUE_URL}?), %{FOO}. The placeholders are %{ISSUE_ID}"
    )
    assert ServiceDeskSetting.objects.get(project=project).new_note_template == ""


def test_preview_names_and_highlights_an_unknown_placeholder(client, project, maintainer) -> None:
    client.force_login(maintainer)
    text = "Ticket **%{ISSUE_IDD}** is %{ISSUE_ID}; [open it](%{ISSUE_URLL}) or <b>%{ISSUE_IDD}</b>"
    response = client.post(preview_url(project), {"text": text}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    warning = html.split('data-testid="unknown-placeholders"')[1].split("</div>")[0]
    assert "%{ISSUE_IDD} (did you mean %{ISSUE_ID}?)" in warning
    assert "%{ISSUE_URLL} (did you mean %{ISSUE_URL}?)" in warning
    body = html.split('data-testid="email-preview-body"')[1]
    assert "Ticket <strong><mark>%{ISSUE_IDD}</mark></strong> is #42" in body
    assert "<b><mark>%{ISSUE_IDD}</mark></b>" in body
    # In a link's URL it is shown as written, not marked (a tag cannot hold a tag).
    assert re.search(r'<a href="%\{ISSUE_URLL\}"[^<>]*>open it</a>', body)
    assert not re.search(r"<[^<>]*<mark", body)


def test_preview_of_a_correct_template_has_no_warning(client, project, maintainer) -> None:
    client.force_login(maintainer)
    response = client.post(
        preview_url(project), {"text": "Ticket %{ ISSUE_ID }"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert "Ticket #42" in html
    assert "unknown-placeholders" not in html
    assert "<mark>" not in html


def test_a_template_saved_before_the_check_is_flagged(client, project, maintainer) -> None:
    ServiceDeskSetting.objects.filter(project=project).update(new_note_template=MISTYPED)
    client.force_login(maintainer)
    editor = client.get(editor_url(project, "new_note")).content.decode()
    assert "%{ISSUE_IDD} (did you mean %{ISSUE_ID}?)" in editor.split("unknown-placeholders")[1]
    assert "<mark>%{ISSUE_IDD}</mark>" in editor
    page = client.get(reverse("service_desk_settings", args=[project.full_path])).content.decode()
    [badge] = re.findall(r'data-testid="unknown-placeholder-badge">(.*?)</span>', page)
    assert badge == "Unknown placeholder: %{ISSUE_IDD}"


def test_the_django_admin_refuses_it_too(client, project) -> None:
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    url = reverse("admin:projects_servicedesksetting_change", args=[project.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "description_template"}
    data.update(thank_you_template=MISTYPED, new_note_template="Fine: %{NOTE_TEXT}")
    data = {k: ("on" if v is True else v) for k, v in data.items() if v is not False}
    response = client.post(url, data)
    assert response.status_code == 200  # the form again, with its error
    assert "%{ISSUE_IDD} (did you mean %{ISSUE_ID}?)" in response.content.decode()
    assert ServiceDeskSetting.objects.get(project=project).thank_you_template == ""
    # The same form with the placeholder fixed is saved.
    data["thank_you_template"] = MISTYPED.replace("IDD", "ID")
    assert client.post(url, data).status_code == 302
    setting = ServiceDeskSetting.objects.get(project=project)
    assert setting.thank_you_template == MISTYPED.replace("IDD", "ID")


@pytest.mark.parametrize("kind", EMAIL_TEMPLATE_KINDS)
def test_the_default_templates_use_only_known_placeholders(kind) -> None:
    validate_email_template(email_template_default(kind))


def test_unknown_placeholders_and_suggestions() -> None:
    assert unknown_placeholders("%{ISSUE_ID} %{ ISSUE_ID } 100%{x 50%{ } %{" + "A" * 65 + "}") == []
    assert unknown_placeholders("%{ISSUE_ID %{NOTE} %{NOTE}") == ["%{NOTE}"]
    assert suggestion("%{NOTETEXT}") == "%{NOTE_TEXT}"
    assert suggestion("%{unsubscribe-url}") == "%{UNSUBSCRIBE_URL}"
    assert suggestion("%{BANANA}") is None
    assert all(name == name.upper() for name in EMAIL_PLACEHOLDERS)
