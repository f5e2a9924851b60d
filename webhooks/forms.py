"""The webhook form: it parses and labels; the rules (which URLs) live in services."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class WebhookForm(forms.Form):
    url = forms.URLField(
        label=_("URL"),
        max_length=2000,
        assume_scheme="https",
        help_text=_("Where events are POSTed as JSON. Private and loopback addresses are refused."),
    )
    secret = forms.CharField(
        label=_("Secret token"),
        required=False,
        max_length=255,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Sent in the X-ServiceDesk-Token header and used to sign the body "
            "(X-ServiceDesk-Signature). Not shown again after saving."
        ),
    )
    clear_secret = forms.BooleanField(label=_("Remove the secret token"), required=False)
    issue_events = forms.BooleanField(
        label=_("Issue events"),
        required=False,
        help_text=_("An issue is opened, closed, reopened or updated."),
    )
    confidential_issue_events = forms.BooleanField(
        label=_("Confidential issue events"),
        required=False,
        help_text=_("The same for confidential issues (most Service Desk tickets are)."),
    )
    note_events = forms.BooleanField(
        label=_("Comments"), required=False, help_text=_("A public comment on a public issue.")
    )
    confidential_note_events = forms.BooleanField(
        label=_("Confidential comments"),
        required=False,
        help_text=_("Internal notes, and comments and customers' replies on confidential issues."),
    )
    service_desk_email_events = forms.BooleanField(
        label=_("Service Desk email received"),
        required=False,
        help_text=_("A customer's email became an issue or a comment (with the sender's address)."),
    )
    enabled = forms.BooleanField(label=_("Active"), required=False, initial=True)
    verify_ssl = forms.BooleanField(
        label=_("Enable SSL verification"), required=False, initial=True
    )

    EVENT_FIELDS = (
        "issue_events",
        "confidential_issue_events",
        "note_events",
        "confidential_note_events",
        "service_desk_email_events",
    )

    def event_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.EVENT_FIELDS]
