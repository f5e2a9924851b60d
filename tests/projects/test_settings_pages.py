"""Settings > Service Desk, the email template editor with its live preview, description
templates, and "regenerate address": who may open and use them, and what they change."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from issues.emails import email_preview
from projects.models import DescriptionTemplate, Project, ServiceDeskSetting, Visibility
from projects.selectors import service_desk_addresses, service_desk_previous_key
from projects.services import (
    description_template_create,
    description_template_delete,
    description_template_update,
    group_create,
    project_create,
    service_desk_address_regenerate,
    service_desk_email_template_set,
    service_desk_settings_update,
)
from servicedesk.config import MailboxConfig

pytestmark = pytest.mark.django_db

INCOMING = MailboxConfig(name="incoming_email", enabled=True, address="in+%{key}@sd.example")
ALIAS = MailboxConfig(name="service_desk_email", enabled=True, address="help+%{key}@sd.example")
PERSONAS = ["owner", "maintainer", "developer", "reporter", "guest", "outsider", "anonymous"]
# What each persona gets on every settings page and action (SPEC §6: Maintainer and up).
# Guests of a private project and non-members must not learn the page exists: 404.
EXPECTED = {
    Visibility.PRIVATE: {
        "owner": "ok", "maintainer": "ok", "developer": 403, "reporter": 403,
        "guest": 404, "outsider": 404, "anonymous": "login",
    },
    Visibility.PUBLIC: {
        "owner": "ok", "maintainer": "ok", "developer": 403, "reporter": 403,
        "guest": 403, "outsider": 404, "anonymous": "login",
    },
}  # fmt: skip


@pytest.fixture(autouse=True)
def mailboxes(settings):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}
    settings.SERVICEDESK_ADDRESS_GRACE_HOURS = 24


@pytest.fixture
def everyone(owner, maintainer, developer, reporter, guest, outsider):  # type: ignore[no-untyped-def]
    return {
        "owner": owner,
        "maintainer": maintainer,
        "developer": developer,
        "reporter": reporter,
        "guest": guest,
        "outsider": outsider,
    }


@pytest.fixture
def template(project) -> DescriptionTemplate:
    return description_template_create(project=project, name="Triage", content="/label ~triage")


def settings_values(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "service_desk_enabled": "on",
        "project_key": "support",
        "outgoing_name": "ACME Support",
        "description_template": "",
        "tickets_confidential_by_default": "on",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def url(name: str, project: Project, *args: object) -> str:
    return reverse(name, args=[project.full_path, *args])


def set_visibility(project: Project, visibility: str) -> None:
    Project.objects.filter(pk=project.pk).update(visibility=visibility)
    project.visibility = visibility


def log_in_as(client, everyone, persona: str) -> None:  # type: ignore[no-untyped-def]
    if persona != "anonymous":
        client.force_login(everyone[persona])


def assert_answer(response, expected: object, ok_status: int) -> None:  # type: ignore[no-untyped-def]
    if expected == "ok":
        assert response.status_code == ok_status, response.content[:500]
    elif expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code == expected


# --- Role matrix --------------------------------------------------------------------------------

PAGES = [
    ("service_desk_settings", ()),
    ("service_desk_regenerate", ()),
    ("service_desk_email_template", ("thank_you",)),
    ("description_template_list", ()),
    ("description_template_new", ()),
    ("description_template_edit", ("TEMPLATE",)),
    ("description_template_delete", ("TEMPLATE",)),
]


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("page", "args"), PAGES, ids=[p for p, _ in PAGES])
def test_settings_pages_role_matrix(
    client, project, everyone, template, visibility, persona, page, args
) -> None:
    set_visibility(project, visibility)
    log_in_as(client, everyone, persona)
    args = tuple(template.pk if a == "TEMPLATE" else a for a in args)
    response = client.get(url(page, project, *args))
    assert_answer(response, EXPECTED[visibility][persona], 200)


def _post_actions(project: Project, template: DescriptionTemplate) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    return [
        (url("service_desk_settings", project), settings_values()),
        (url("service_desk_regenerate", project), {}),
        (url("service_desk_email_template", project, "thank_you"), {"text": "Hi %{ISSUE_ID}"}),
        (url("service_desk_email_template", project, "thank_you"), {"reset": "1"}),
        (url("service_desk_email_preview", project, "thank_you"), {"text": "Hi"}),
        (url("description_template_new", project), {"name": "Bug", "content": "Steps?"}),
        (url("description_template_edit", project, template.pk), {"name": "T", "content": "x"}),
        (url("description_template_delete", project, template.pk), {}),
    ]


ACTION_IDS = ["save", "regenerate", "email", "email-reset", "preview", "tpl-new", "tpl-edit",
              "tpl-delete"]  # fmt: skip


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("action", range(len(ACTION_IDS)), ids=ACTION_IDS)
def test_settings_actions_role_matrix(
    client, project, everyone, template, visibility, persona, action
) -> None:
    set_visibility(project, visibility)
    log_in_as(client, everyone, persona)
    before = ServiceDeskSetting.objects.get(project=project)
    templates_before = list(DescriptionTemplate.objects.values_list("pk", "name", "content"))
    path, data = _post_actions(project, template)[action]
    response = client.post(path, data, headers={"HX-Request": "true"} if "preview" in path else {})
    expected = EXPECTED[visibility][persona]
    assert_answer(response, expected, 200 if "preview" in path else 302)
    if expected != "ok":
        after = ServiceDeskSetting.objects.get(project=project)
        assert (after.updated_at, after.address_token) == (before.updated_at, before.address_token)
        assert list(DescriptionTemplate.objects.values_list("pk", "name", "content")) == (
            templates_before
        )


def test_internal_project_settings_are_404_for_signed_in_non_members(
    client, project, outsider, reporter
) -> None:
    set_visibility(project, Visibility.INTERNAL)
    client.force_login(outsider)
    assert client.get(url("service_desk_settings", project)).status_code == 404
    client.force_login(reporter)
    assert client.get(url("service_desk_settings", project)).status_code == 403


def test_settings_tab_only_for_maintainers(client, project, maintainer, reporter) -> None:
    settings_url = url("service_desk_settings", project)
    client.force_login(reporter)
    assert settings_url not in client.get(url("issue_list", project)).content.decode()
    client.force_login(maintainer)
    assert f'href="{settings_url}"' in client.get(url("issue_list", project)).content.decode()


def test_unknown_email_kind_is_404(client, project, owner) -> None:
    client.force_login(owner)
    assert client.get(url("service_desk_email_template", project, "rejected")).status_code == 404
    response = client.post(url("service_desk_email_preview", project, "nope"), {"text": "x"})
    assert response.status_code == 404


def test_other_projects_template_is_404(client, project, owner) -> None:
    other = project_create(group=project.group, path="other")
    foreign = description_template_create(project=other, name="Theirs", content="x")
    client.force_login(owner)
    assert client.get(url("description_template_edit", project, foreign.pk)).status_code == 404
    response = client.post(url("description_template_delete", project, foreign.pk))
    assert response.status_code == 404
    assert DescriptionTemplate.objects.filter(pk=foreign.pk).exists()


# --- The settings page ------------------------------------------------------------------------


def test_settings_page_shows_address_with_copy_button_and_every_control_labelled(
    client, project, owner
) -> None:
    client.force_login(owner)
    response = client.get(url("service_desk_settings", project))
    html = response.content.decode()
    address = f"in+acme-game-{project.pk}-issue-@sd.example"
    assert re.search(
        rf'<code id="sd-address-1" data-testid="service-desk-address">{re.escape(address)}</code>',
        html,
    )
    assert 'data-copy="#sd-address-1"' in html
    assert "Alias address" not in html
    # Every input, select and textarea has a <label for=…> with its id.
    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html)
    assert len(ids) >= 8
    for element_id in ids:
        assert f'for="{element_id}"' in html, element_id
    assert "<script" not in html.split("</head>")[1]
    assert not re.search(r"\son[a-z]+=", html)


def test_settings_page_shows_the_alias_address_when_configured(
    client, project, owner, settings
) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    service_desk_settings_update(project=project, **settings_kwargs(project_key="help_1"))
    client.force_login(owner)
    html = client.get(url("service_desk_settings", project)).content.decode()
    assert "Alias address (custom suffix)" in html
    assert "help+acme-game-help_1@sd.example" in html
    assert f"in+acme-game-{project.pk}-issue-@sd.example" in html


def test_settings_page_without_service_desk_shows_no_address(client, project, owner) -> None:
    ServiceDeskSetting.objects.filter(project=project).update(service_desk_enabled=False)
    client.force_login(owner)
    html = client.get(url("service_desk_settings", project)).content.decode()
    assert 'data-testid="service-desk-address"' not in html
    assert "Service Desk is off" in html


def test_saving_settings_stores_them_and_shows_a_message(client, project, maintainer) -> None:
    tpl = description_template_create(project=project, name="Bug", content="/label ~bug")
    client.force_login(maintainer)
    data = settings_values(
        description_template=tpl.pk,
        reopen_issue_on_external_participant_note="on",
        add_external_participants_from_cc="on",
        tickets_confidential_by_default=None,
        send_issue_closed_email="on",
        sign_replies_with_agent_name="on",
    )
    response = client.post(url("service_desk_settings", project), data, follow=True)
    assert "Service Desk settings saved." in response.content.decode()
    setting = ServiceDeskSetting.objects.get(project=project)
    assert setting.project_key == "support"
    assert setting.outgoing_name == "ACME Support"
    assert setting.description_template == tpl
    assert setting.reopen_issue_on_external_participant_note
    assert setting.add_external_participants_from_cc
    assert not setting.tickets_confidential_by_default
    assert setting.send_issue_closed_email
    assert setting.sign_replies_with_agent_name
    # Turning Service Desk off keeps everything else.
    client.post(url("service_desk_settings", project), settings_values(service_desk_enabled=None))
    setting.refresh_from_db()
    assert not setting.service_desk_enabled
    assert setting.project_key == "support"


def test_invalid_suffix_is_shown_next_to_the_field_and_nothing_is_saved(
    client, project, owner
) -> None:
    client.force_login(owner)
    response = client.post(
        url("service_desk_settings", project),
        settings_values(project_key="Support Team!", outgoing_name="Changed"),
    )
    assert response.status_code == 400
    html = response.content.decode()
    field_error = re.search(r'id="id_project_key_error">(.*?)</div>', html, re.S)
    assert field_error is not None
    assert "Only lowercase letters, digits and underscores are allowed." in field_error.group(1)
    assert 'aria-invalid="true"' in html
    assert 'value="Support Team!"' in html  # what was typed stays
    setting = ServiceDeskSetting.objects.get(project=project)
    assert (setting.project_key, setting.outgoing_name) == ("", "")


def test_public_project_keeps_email_issues_confidential(client, project, owner) -> None:
    set_visibility(project, Visibility.PUBLIC)
    client.force_login(owner)
    html = client.get(url("service_desk_settings", project)).content.decode()
    checkbox = re.search(r'<input[^>]*name="tickets_confidential_by_default"[^>]*>', html)
    assert checkbox is not None
    assert "disabled" in checkbox.group(0)
    assert "checked" in checkbox.group(0)
    assert "Always on in public projects" in html
    # A forged POST cannot turn it off.
    data = settings_values(tickets_confidential_by_default=None)
    assert client.post(url("service_desk_settings", project), data).status_code == 302
    assert ServiceDeskSetting.objects.get(project=project).tickets_confidential_by_default


def test_template_select_offers_project_group_and_instance_templates(
    client, project, owner
) -> None:
    description_template_create(project=project, name="Own", content="own")
    DescriptionTemplate.objects.create(group=project.group, name="Group wide", content="g")
    DescriptionTemplate.objects.create(name="Instance wide", content="i")
    other_group = group_create(path="elsewhere")
    DescriptionTemplate.objects.create(group=other_group, name="Not ours", content="n")
    client.force_login(owner)
    html = client.get(url("service_desk_settings", project)).content.decode()
    assert "Own (project)" in html
    assert "Group wide (group acme)" in html
    assert "Instance wide (instance)" in html
    assert "Not ours" not in html


# --- Services ----------------------------------------------------------------------------------


def settings_kwargs(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "service_desk_enabled": True,
        "project_key": "",
        "outgoing_name": "",
        "description_template": None,
        "reopen_issue_on_external_participant_note": False,
        "add_external_participants_from_cc": False,
        "tickets_confidential_by_default": True,
        "send_issue_closed_email": False,
        "sign_replies_with_agent_name": False,
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("project_key", "Support", "Only lowercase letters"),
        ("project_key", "sup-port", "Only lowercase letters"),
        ("project_key", "a" * 256, "at most 255"),
        ("outgoing_name", "ACME\nBcc: x@evil.example", "one line"),
        ("outgoing_name", "x" * 256, "at most 255"),
    ],
)
def test_settings_update_validates(project, field, value, message) -> None:
    with pytest.raises(ValidationError) as error:
        service_desk_settings_update(project=project, **settings_kwargs(**{field: value}))
    assert message in error.value.message_dict[field][0]


def test_settings_update_refuses_another_projects_template(project) -> None:
    other = project_create(group=group_create(path="other"), path="p")
    foreign = description_template_create(project=other, name="X", content="x")
    with pytest.raises(ValidationError) as error:
        service_desk_settings_update(
            project=project, **settings_kwargs(description_template=foreign)
        )
    assert "not available" in error.value.message_dict["description_template"][0]


def test_settings_update_strips_and_forces_confidential_in_public_projects(project) -> None:
    set_visibility(project, Visibility.PUBLIC)
    setting = service_desk_settings_update(
        project=project,
        **settings_kwargs(project_key=" help ", outgoing_name="  ACME  ",
                          tickets_confidential_by_default=False),
    )  # fmt: skip
    assert (setting.project_key, setting.outgoing_name) == ("help", "ACME")
    assert setting.tickets_confidential_by_default is True


# --- Regenerate address ----------------------------------------------------------------------


def test_regenerate_sets_a_random_token_and_keeps_the_old_key_for_the_grace_period(
    project,
) -> None:
    old_key = project.service_desk.default_key
    before = timezone.now()
    setting = service_desk_address_regenerate(project=project)
    setting.refresh_from_db()
    assert re.fullmatch(r"[0-9a-f]{16}", setting.address_token)
    assert setting.default_key == f"acme-game-{project.pk}-{setting.address_token}-issue-"
    assert setting.previous_address_token == ""  # the original address had no token
    assert setting.previous_address_expires_at is not None
    expected = before + timedelta(hours=24)
    assert expected <= setting.previous_address_expires_at <= expected + timedelta(seconds=5)
    assert service_desk_previous_key(setting) == old_key
    assert service_desk_addresses(project=project) == [f"in+{setting.default_key}@sd.example"]

    # Regenerating again: the first new token becomes the previous one, the original is gone.
    first_token = setting.address_token
    setting = service_desk_address_regenerate(project=project)
    assert setting.address_token not in (first_token, "")
    assert setting.previous_address_token == first_token
    assert service_desk_previous_key(setting) == f"acme-game-{project.pk}-{first_token}-issue-"


def test_previous_key_expires(project) -> None:
    setting = service_desk_address_regenerate(project=project)
    setting.previous_address_expires_at = timezone.now() - timedelta(seconds=1)
    assert service_desk_previous_key(setting) is None
    assert service_desk_previous_key(ServiceDeskSetting(project=project)) is None


def test_regenerate_without_grace_period_drops_the_old_key(project, settings) -> None:
    settings.SERVICEDESK_ADDRESS_GRACE_HOURS = 0
    setting = service_desk_address_regenerate(project=project)
    assert setting.previous_address_expires_at is None
    assert service_desk_previous_key(setting) is None


def test_regenerate_needs_confirmation_then_shows_new_and_previous_address(
    client, project, owner
) -> None:
    client.force_login(owner)
    old_address = f"in+acme-game-{project.pk}-issue-@sd.example"
    confirm = client.get(url("service_desk_regenerate", project)).content.decode()
    assert old_address in confirm
    assert "keeps working for <strong>24 hours</strong>" in confirm
    assert (
        ServiceDeskSetting.objects.get(project=project).address_token == ""
    )  # GET changes nothing
    response = client.post(url("service_desk_regenerate", project), follow=True)
    html = response.content.decode()
    token = ServiceDeskSetting.objects.get(project=project).address_token
    assert token
    assert "New address generated. The old one keeps working for 24 hours." in html
    assert f"in+acme-game-{project.pk}-{token}-issue-@sd.example" in html
    previous = re.search(r'data-testid="previous-address">(.*?)</p>', html, re.S)
    assert previous is not None
    assert old_address in previous.group(1)


# --- Email templates and the live preview -------------------------------------------------------


def test_editor_shows_the_default_text_and_a_rendered_preview(client, project, owner) -> None:
    client.force_login(owner)
    html = client.get(url("service_desk_email_template", project, "thank_you")).content.decode()
    textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", html, re.S)
    assert textarea is not None
    assert "%{ISSUE_ID}" in textarea.group(1)  # the default file, placeholders as written
    assert 'hx-trigger="keyup changed delay:300ms"' in html
    assert f'hx-post="{url("service_desk_email_preview", project, "thank_you")}"' in html
    preview = html.split('data-testid="email-preview"')[1]
    assert "#42" in preview  # %{ISSUE_ID} of the sample issue, rendered
    assert "%{ISSUE_ID}" not in preview
    assert "Default text" not in html or "uses the default text" in html
    assert "Reset to default" not in html  # nothing to reset yet


def test_preview_renders_placeholders_markdown_and_sanitises(client, project, owner) -> None:
    client.force_login(owner)
    text = "**Thanks!** Ticket %{ ISSUE_PATH } at %{ISSUE_URL}\n\n<script>alert(1)</script>%{NOPE}"
    response = client.post(
        url("service_desk_email_preview", project, "thank_you"),
        {"text": text},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html  # a partial for htmx
    assert "<strong>Thanks!</strong>" in html
    assert "acme/game#42" in html
    assert "/acme/game/-/issues/42/" in html
    assert "<mark>%{NOPE}</mark>" in html  # an unknown placeholder, highlighted
    assert "<script" not in html
    assert "Re: The app crashes when I open my inventory (#42)" in html


def test_preview_of_blank_text_shows_the_default(project) -> None:
    subject, html = email_preview(project=project, kind="new_note", text="   ")
    default_subject, default_html = email_preview(project=project, kind="new_note", text="")
    assert (subject, html.split("unsubscribe")[0]) == (
        default_subject,
        default_html.split("unsubscribe")[0],
    )
    assert "version 2.3.2" in html  # the sample comment, through %{NOTE_TEXT}


@pytest.mark.parametrize("kind", ["thank_you", "new_participant", "new_note", "issue_closed"])
def test_every_email_kind_previews_its_default_without_touching_the_project(project, kind) -> None:
    setting = project.service_desk
    subject, html = email_preview(project=project, kind=kind, text="")
    assert subject == "Re: The app crashes when I open my inventory (#42)"
    assert "Unsubscribe" in html
    assert "%{" not in html
    assert project.service_desk is setting  # the sample setting did not replace the real one
    with pytest.raises(ValueError, match="No preview"):
        email_preview(project=project, kind="rejected", text="")


def test_preview_without_javascript_returns_the_whole_editor(client, project, owner) -> None:
    client.force_login(owner)
    response = client.post(
        url("service_desk_email_preview", project, "new_note"), {"text": "Hello %{ISSUE_ID}"}
    )
    html = response.content.decode()
    assert "<html" in html
    assert "Hello %{ISSUE_ID}</textarea>" in html
    assert "Hello #42" in html
    assert ServiceDeskSetting.objects.get(project=project).new_note_template == ""


def test_saving_and_resetting_an_email_template(client, project, owner) -> None:
    client.force_login(owner)
    editor = url("service_desk_email_template", project, "thank_you")
    response = client.post(editor, {"text": "We got it: %{ISSUE_ID}\r\n"}, follow=True)
    assert "email template is saved" in response.content.decode()
    assert "Reset to default" in response.content.decode()
    setting = ServiceDeskSetting.objects.get(project=project)
    assert setting.thank_you_template == "We got it: %{ISSUE_ID}"
    response = client.post(editor, {"text": "ignored", "reset": "1"}, follow=True)
    assert "uses the default text again" in response.content.decode()
    setting.refresh_from_db()
    assert setting.thank_you_template == ""


def test_saving_the_default_text_unchanged_keeps_following_the_default(
    client, project, owner
) -> None:
    client.force_login(owner)
    editor = url("service_desk_email_template", project, "new_note")
    html = client.get(editor).content.decode()
    default = re.search(r"<textarea[^>]*>\n?(.*?)</textarea>", html, re.S)
    assert default is not None
    import html as html_lib

    client.post(editor, {"text": html_lib.unescape(default.group(1))})
    assert ServiceDeskSetting.objects.get(project=project).new_note_template == ""


def test_too_long_email_template_is_an_error_next_to_the_field(client, project, owner) -> None:
    client.force_login(owner)
    editor = url("service_desk_email_template", project, "thank_you")
    response = client.post(editor, {"text": "x" * 20_001})
    assert response.status_code == 400
    assert 'id="id_text_error"' in response.content.decode()
    assert ServiceDeskSetting.objects.get(project=project).thank_you_template == ""


def test_custom_template_is_used_by_real_emails(project) -> None:
    """The preview and the emails share one renderer: a saved template reaches the outbox."""
    from issues.emails import NewTicket, service_desk_issues_created
    from issues.services import participant_add
    from tests.factories import IssueFactory

    service_desk_email_template_set(project=project, kind="thank_you", text="Got %{ISSUE_ID}!")
    project = Project.objects.get(pk=project.pk)  # as the mailroom loads it
    issue = IssueFactory(project=project, external_author="jake@customer.example")
    requester, _ = participant_add(issue=issue, email="jake@customer.example")
    (email,) = service_desk_issues_created([NewTicket(issue, requester)])
    assert email.body_text == f"Got #{issue.iid}!\n"


# --- Description templates ----------------------------------------------------------------------


def test_description_template_crud_through_the_pages(client, project, maintainer) -> None:
    client.force_login(maintainer)
    response = client.post(
        url("description_template_new", project),
        {"name": "Bug report", "content": "/label ~bug\r\nSteps?"},
        follow=True,
    )
    assert "Template “Bug report” created." in response.content.decode()
    tpl = DescriptionTemplate.objects.get(project=project)
    assert tpl.content == "/label ~bug\nSteps?"
    response = client.post(
        url("description_template_edit", project, tpl.pk),
        {"name": "Bug", "content": "Steps to reproduce?"},
        follow=True,
    )
    assert "Template “Bug” saved." in response.content.decode()
    tpl.refresh_from_db()
    assert (tpl.name, tpl.content) == ("Bug", "Steps to reproduce?")
    confirm = client.get(url("description_template_delete", project, tpl.pk)).content.decode()
    assert "Delete template “Bug”?" in confirm
    response = client.post(url("description_template_delete", project, tpl.pk), follow=True)
    assert "Template “Bug” deleted." in response.content.decode()
    assert not DescriptionTemplate.objects.filter(pk=tpl.pk).exists()


def test_description_template_validation_errors_are_next_to_the_fields(
    client, project, owner, template
) -> None:
    client.force_login(owner)
    response = client.post(
        url("description_template_new", project), {"name": "triage", "content": "x"}
    )
    assert response.status_code == 400
    error = re.search(r'id="id_name_error">(.*?)</div>', response.content.decode(), re.S)
    assert error is not None
    assert "already has a template with this name" in error.group(1)
    response = client.post(url("description_template_new", project), {"name": "", "content": ""})
    html = response.content.decode()
    assert 'id="id_name_error"' in html
    assert 'id="id_content_error"' in html


def test_description_template_services(project, template) -> None:
    with pytest.raises(ValidationError):
        description_template_create(project=project, name="  ", content="x")
    with pytest.raises(ValidationError):
        description_template_create(project=project, name="x", content="y" * 20_001)
    description_template_update(template=template, name="Triage", content="changed")
    assert DescriptionTemplate.objects.get(pk=template.pk).content == "changed"
    service_desk_settings_update(project=project, **settings_kwargs(description_template=template))
    description_template_delete(template=template)
    assert ServiceDeskSetting.objects.get(project=project).description_template is None
    with pytest.raises(ValueError, match="project's own"):
        description_template_delete(
            template=DescriptionTemplate.objects.create(name="i", content="i")
        )


def test_template_list_shows_own_and_inherited(client, project, owner, template) -> None:
    DescriptionTemplate.objects.create(group=project.group, name="Group one", content="g")
    client.force_login(owner)
    html = client.get(url("description_template_list", project)).content.decode()
    assert url("description_template_edit", project, template.pk) in html
    assert "Group one" in html
    assert "Group acme" in html


# --- Query counts -----------------------------------------------------------------------------


def test_settings_page_query_count_does_not_grow_with_templates(client, project, owner) -> None:
    client.force_login(owner)
    client.get(url("service_desk_settings", project))  # warm the template and URL caches

    def count() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url("service_desk_settings", project)).status_code == 200
        return len(ctx.captured_queries)

    few = count()
    templates = [
        description_template_create(project=project, name=f"T{i}", content="x") for i in range(30)
    ]
    # A selected template costs nothing extra either (its id is enough to mark it selected).
    service_desk_settings_update(
        project=project, **settings_kwargs(description_template=templates[3])
    )
    assert count() == few
