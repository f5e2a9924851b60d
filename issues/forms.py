from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Any number of files (Django's FileField takes one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        if not data:
            return []
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


class NoteForm(forms.Form):
    body = forms.CharField(
        label=_("Comment"),
        widget=forms.Textarea(attrs={"rows": 5, "placeholder": _("Write a comment (Markdown)")}),
        max_length=1_000_000,
        strip=True,
        required=False,
    )
    files = MultipleFileField(label=_("Attach files"), required=False)
    # Rendered as two radio buttons, "Reply to customer" (false) and "Internal note" (true);
    # CheckboxInput reads "true"/"false" and the old checkbox's "on" alike.
    internal = forms.BooleanField(
        label=_("Internal note"),
        required=False,
        help_text=_("Only the team sees this; it is never emailed."),
    )
    # A random token per rendered form: the view posts a token once, so a double click or a
    # resent POST does not post the comment twice (see ``views.note_add``).
    once = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    # The newest note the page showed when it was rendered: a public reply is held when others
    # wrote since (``views.note_add``).
    seen = forms.IntegerField(
        widget=forms.HiddenInput, required=False, min_value=0, max_value=2**63 - 1
    )

    def clean_files(self) -> list[Any]:
        files = self.cleaned_data["files"]
        limit = settings.SERVICEDESK_MAX_UPLOADS_PER_NOTE
        if len(files) > limit:
            raise forms.ValidationError(
                _("At most %(limit)s files per comment.") % {"limit": limit}
            )
        largest = settings.SERVICEDESK_MAX_UPLOAD_SIZE
        for f in files:
            if f.size > largest:
                raise forms.ValidationError(
                    f"{f.name} is {filesizeformat(f.size)}; files may be at most "
                    f"{filesizeformat(largest)}."
                )
        return files

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not cleaned.get("body") and not cleaned.get("files") and not self.errors:
            self.add_error("body", _("Write a comment or attach a file."))
        return cleaned


# --- The issue page's sidebar ------------------------------------------------------------------
# These validate POSTs only; the page renders its controls from the selectors' lists (one query
# each), and the choices here are filled by the view from the same lists.


class LabelsForm(forms.Form):
    labels = forms.TypedMultipleChoiceField(label=_("Labels"), coerce=int, required=False)


class AssigneesForm(forms.Form):
    assignees = forms.TypedMultipleChoiceField(label=_("Assignees"), coerce=int, required=False)


class ConfidentialityForm(forms.Form):
    confidential = forms.TypedChoiceField(
        choices=[("true", _("Confidential")), ("false", _("Visible to everyone"))],
        coerce=lambda value: value == "true",
    )


class ParticipantForm(forms.Form):
    email = forms.EmailField(label=_("Add a participant by email"), max_length=320)


class ConvertForm(forms.Form):
    email = forms.EmailField(label=_("Requester's email"), max_length=320)


class MoveForm(forms.Form):
    project = forms.TypedChoiceField(label=_("Move to project"), coerce=int)


class PreviewForm(forms.Form):
    body = forms.CharField(max_length=1_000_000, required=False, strip=True)


class _Numbers(forms.Field):
    """Every value of a repeated parameter that is a positive number (others are dropped)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        values = value if isinstance(value, list | tuple) else [value] if value else []
        return list(dict.fromkeys(int(v) for v in values if str(v).isdigit() and len(str(v)) < 10))


class BulkEditForm(forms.Form):
    """The tracker's bulk edit. ``scope``: the ticked issues (``iid``), every issue of the page
    (``page_iid``, one hidden field per row), or every issue under the list's filters (the
    query string the form posts to). ``labels`` and ``assignees`` get their choices from the
    view."""

    SCOPES = {"selected": _("Ticked"), "page": _("This page"), "all": _("All matching")}

    action = forms.ChoiceField(choices=[])
    scope = forms.ChoiceField(choices=list(SCOPES.items()), required=False)
    iid = _Numbers(required=False)
    page_iid = _Numbers(required=False)
    labels = forms.TypedMultipleChoiceField(coerce=int, required=False)
    assignees = forms.TypedMultipleChoiceField(coerce=int, required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        action = cleaned.get("action")
        if action in ("add_labels", "remove_labels") and not cleaned.get("labels"):
            raise forms.ValidationError(_("Choose the labels to add or remove."))
        if action == "assign" and not cleaned.get("assignees"):
            raise forms.ValidationError(_("Choose whom to assign."))
        scope = cleaned.get("scope") or "selected"
        cleaned["scope"] = scope
        if scope == "selected" and not cleaned.get("iid"):
            raise forms.ValidationError(_("Tick the issues to change first."))
        return cleaned
