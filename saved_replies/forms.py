from __future__ import annotations

from django import forms

from .models import MAX_CONTENT
from .services import PLACEHOLDERS


class SavedReplyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name")
    content = forms.CharField(
        max_length=MAX_CONTENT,
        label="Text",
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown. Placeholders: "
        + ", ".join(f"%{{{name}}}" for name in PLACEHOLDERS)
        + ". Quick actions (/label ~refund, /close) run when the comment is posted.",
    )
