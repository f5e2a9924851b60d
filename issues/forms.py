from django import forms


class NoteForm(forms.Form):
    body = forms.CharField(
        label="Comment",
        widget=forms.Textarea(attrs={"rows": 5, "placeholder": "Write a comment (Markdown)"}),
        max_length=1_000_000,
        strip=True,
    )
    internal = forms.BooleanField(
        label="Internal note",
        required=False,
        help_text="Only Reporters and up can see it; it is never emailed.",
    )
