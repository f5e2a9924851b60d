from __future__ import annotations

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .models import MAX_CONTENT
from .services import PLACEHOLDERS


class SavedReplyForm(forms.Form):
    name = forms.CharField(max_length=100, label=_("Name"))
    content = forms.CharField(
        max_length=MAX_CONTENT,
        label=_("Text"),
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text=format_lazy(
            _(
                "Markdown. Placeholders: {placeholders}. Quick actions (/label ~refund, /close) "
                "run when the comment is posted."
            ),
            placeholders=", ".join(f"%{{{name}}}" for name in PLACEHOLDERS),
        ),
    )
