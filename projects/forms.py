"""Forms of the project settings and members pages. They parse and label; the rules live in
projects.services (the forms' errors come back from there too)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .models import (
    CustomEmail,
    DescriptionTemplate,
    Group,
    Project,
    Role,
    ServiceDeskSetting,
    Visibility,
)
from .services import DESCRIPTION_TEMPLATE_MAX_LENGTH, EMAIL_TEMPLATE_MAX_LENGTH


class DescriptionTemplateChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """The templates grouped by where they come from: project, group, instance."""

    def label_from_instance(self, obj: DescriptionTemplate) -> str:
        if obj.project_id is not None:
            return f"{obj.name} (project)"
        if obj.group is not None:
            return f"{obj.name} (group {obj.group.full_path})"
        return f"{obj.name} (instance)"


class ServiceDeskSettingsForm(forms.Form):
    service_desk_enabled = forms.BooleanField(
        label=_("Activate Service Desk"),
        required=False,
        help_text=_("Emails to the project's address become confidential issues."),
    )
    project_key = forms.CharField(
        label=_("Custom email address suffix"),
        required=False,
        max_length=255,
        help_text=_(
            "Lowercase letters, digits and underscores, e.g. support. Used by the alias "
            "address: <project slug>-<suffix>."
        ),
    )
    outgoing_name = forms.CharField(
        label=_("Email display name"),
        required=False,
        max_length=255,
        help_text=format_lazy(
            _("Shown as the sender of emails to customers. Empty: “{name}”."),
            name=ServiceDeskSetting.DEFAULT_OUTGOING_NAME,
        ),
    )
    description_template = DescriptionTemplateChoiceField(
        label=_("Description template"),
        queryset=DescriptionTemplate.objects.none(),
        required=False,
        empty_label=_("None"),
        help_text=_(
            "Appended to the description of every issue created from an email; quick "
            "actions in it (/label …) run."
        ),
    )
    sign_replies_with_agent_name = forms.BooleanField(
        label=_("Sign replies with the agent's name"),
        required=False,
        help_text=_(
            "A comment is emailed from “Bob at <display name>”, and %{AUTHOR_NAME} in the "
            "new-note email is the commenter's name. Off: both are the display name alone."
        ),
    )
    reopen_issue_on_external_participant_note = forms.BooleanField(
        label=_("Reopen a closed issue when a customer replies"), required=False
    )
    add_external_participants_from_cc = forms.BooleanField(
        label=_("Add people in Cc of a new email as participants"),
        required=False,
        help_text=_("They get the “new participant” email and every public comment."),
    )
    tickets_confidential_by_default = forms.BooleanField(
        label=_("New email issues are confidential"), required=False
    )
    send_issue_closed_email = forms.BooleanField(
        label=_("Email participants when an issue is closed"), required=False
    )
    satisfaction_survey = forms.BooleanField(
        label=_("Ask customers how we did when an issue is closed"),
        required=False,
        help_text=_(
            "The closing email (sent even if the option above is off) carries three one-click "
            "answers: good, okay, bad."
        ),
    )
    send_merged_email = forms.BooleanField(
        label=_("Email a merged ticket's participants where the conversation continues"),
        required=False,
    )
    # Issue 15 (languages): the language of the emails to customers. Not required, so that a
    # form posted without it (an older page, the API) leaves the setting as it is.
    language = forms.ChoiceField(
        label=_("Language of the emails to customers"),
        required=False,
        choices=settings.LANGUAGES,
        help_text=_(
            "The default texts are sent in this language; texts you wrote stay as written."
        ),
    )

    def __init__(
        self,
        *args: Any,
        project: Project,
        templates: QuerySet[DescriptionTemplate],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["description_template"].queryset = templates  # type: ignore[attr-defined]
        if project.is_public:
            field = self.fields["tickets_confidential_by_default"]
            field.disabled = True
            field.initial = True
            field.help_text = "Always on in public projects: customers' emails are never public."

    @classmethod
    def initial_from(cls, setting: ServiceDeskSetting) -> dict[str, Any]:
        fields = [name for name in cls.base_fields if name != "description_template"]
        initial = {name: getattr(setting, name) for name in fields}
        # The id, not the object: no query to load the selected template.
        initial["description_template"] = setting.description_template_id
        return initial


class EmailTemplateForm(forms.Form):
    text = forms.CharField(
        label=_("Template"),
        required=False,
        strip=False,
        max_length=EMAIL_TEMPLATE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "true"}),
    )


class DescriptionTemplateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    content = forms.CharField(
        label=_("Text"),
        max_length=DESCRIPTION_TEMPLATE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text=_(
            "Markdown, appended after the customer's email. Quick actions (/label bug) run."
        ),
    )


class MemberAddForm(forms.Form):
    """Every role parses; which ones this user may grant is the service's question (a forged
    Owner from a Maintainer is a 403, not a form error). The page offers only grantable ones."""

    username = forms.CharField(label=_("Username"), max_length=150)
    role = forms.TypedChoiceField(
        label=_("Role"), coerce=int, choices=Role.choices, initial=Role.REPORTER
    )


class MemberRoleForm(forms.Form):
    role = forms.TypedChoiceField(label=_("Role"), coerce=int, choices=Role.choices)


class MemberInviteForm(forms.Form):
    email = forms.EmailField(label=_("Email address"), max_length=254)
    role = forms.TypedChoiceField(
        label=_("Role"), coerce=int, choices=Role.choices, initial=Role.REPORTER
    )


class GroupForm(forms.Form):
    """A new group (with its parent) or a group's new path and name."""

    path = forms.CharField(label=_("Path"), max_length=100, help_text=_("Part of every address "
                           "below it: letters, digits, '_', '-', '.'."))  # fmt: skip
    name = forms.CharField(label=_("Name"), max_length=255, required=False)
    parent = forms.ModelChoiceField(
        label=_("Parent group"), queryset=Group.objects.none(), required=False,
        empty_label=_("None (a top-level group)"),
    )  # fmt: skip

    def __init__(self, *args: Any, parents: QuerySet[Group], top_level: bool = True,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        field = self.fields["parent"]
        field.queryset = parents  # type: ignore[attr-defined]
        if not top_level:
            field.required = True
            field.empty_label = None  # type: ignore[attr-defined]


class ProjectCreateForm(forms.Form):
    group = forms.ModelChoiceField(
        label=_("Group"), queryset=Group.objects.none(), empty_label=None
    )
    path = forms.CharField(label=_("Path"), max_length=100, help_text=_("Part of its addresses: "
                           "letters, digits, '_', '-', '.'."))  # fmt: skip
    name = forms.CharField(label=_("Name"), max_length=255, required=False)
    visibility = forms.ChoiceField(
        label=_("Visibility"), choices=Visibility.choices, initial=Visibility.PRIVATE
    )
    description = forms.CharField(label=_("Description"), required=False, max_length=2000,
                                  widget=forms.Textarea(attrs={"rows": 3}))  # fmt: skip

    def __init__(self, *args: Any, groups: QuerySet[Group], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = groups  # type: ignore[attr-defined]


class RenameForm(forms.Form):
    path = forms.CharField(
        label=_("Path"),
        max_length=100,
        help_text=_(
            "Changing it changes every address below. Old web addresses redirect to the "
            "new ones, and old Service Desk email addresses keep working."
        ),
    )
    name = forms.CharField(label=_("Name"), max_length=255)


class InstanceTemplateForm(DescriptionTemplateForm):
    pass


class CustomEmailForm(forms.Form):
    """A project's own address and its SMTP server. The password is never sent back to the
    browser (``render_value=False``), not even when the form is shown again with errors."""

    address = forms.EmailField(
        label=_("Custom email address"),
        max_length=254,
        help_text=_(
            "The address customers write to, e.g. support@example.com. Your provider "
            "must forward its emails to the project's Service Desk address."
        ),
    )
    smtp_host = forms.CharField(label=_("SMTP host"), max_length=255)
    smtp_port = forms.IntegerField(
        label=_("SMTP port"),
        min_value=1,
        max_value=65535,
        initial=587,
        help_text=_("587 uses STARTTLS, 465 TLS; the connection is always encrypted."),
    )
    smtp_username = forms.CharField(label=_("SMTP username"), max_length=255)
    smtp_password = forms.CharField(
        label=_("SMTP password"),
        min_length=8,
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("8 to 128 characters. Stored encrypted and never shown again."),
    )
    smtp_authentication = forms.ChoiceField(
        label=_("SMTP authentication"),
        choices=CustomEmail.Authentication.choices,
        initial=CustomEmail.Authentication.AUTO,
    )
