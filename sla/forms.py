"""The response-target settings form: durations as people write them ("4h", "1h 30m")."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from issues.models import Label

from .hours import ScheduleError, parse_holidays, parse_week
from .models import ResponsePolicy, time_zone_choices

_DURATION = re.compile(r"^(?:(\d{1,3})\s*h)?\s*(?:(\d{1,4})\s*m(?:in)?)?$")
MAX_MINUTES = 30 * 24 * 60  # a target of a month of business time is the most we accept
MAX_WARN_MINUTES = 24 * 60  # sla.services.SWEEP_AHEAD


def parse_duration(text: str) -> int:
    """Minutes in ``4h``, ``90m``, ``1h 30m`` or a bare number of minutes."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    found = _DURATION.match(text)
    if not text or not found or not any(found.groups()):
        raise ValidationError(_("Write a duration like 4h, 30m or 1h 30m."))
    hours, minutes = (int(part or 0) for part in found.groups())
    return hours * 60 + minutes


def format_duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return (
        " ".join(
            part for part in (f"{hours}h" if hours else "", f"{rest}m" if rest else "") if part
        )
        or "0m"
    )


class DurationField(forms.Field):
    widget = forms.TextInput

    def __init__(self, *, maximum: int = MAX_MINUTES, **kwargs: Any) -> None:
        self.maximum = maximum
        super().__init__(**kwargs)

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        return {**super().widget_attrs(widget), "maxlength": "20", "size": "10"}

    def prepare_value(self, value: Any) -> Any:
        return format_duration(value) if isinstance(value, int) else value

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = str(value or "").strip()[:20]
        if not text:
            return None
        minutes = parse_duration(text)
        if not 1 <= minutes <= self.maximum:
            raise ValidationError(
                _("Between 1 minute and %(most)s.") % {"most": format_duration(self.maximum)}
            )
        return minutes


class ResponsePolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    first_response_minutes = DurationField(
        label=gettext_lazy("First response within"),
        help_text=gettext_lazy(
            "Business time from a new ticket to the team's first public answer, e.g. 4h."
        ),
    )
    next_response_minutes = DurationField(
        label=gettext_lazy("Next response within"),
        help_text=gettext_lazy(
            "Business time from a customer's later message (or a reopen) to the next answer, "
            "e.g. 8h."
        ),
    )
    warn_minutes = DurationField(
        maximum=MAX_WARN_MINUTES,
        label=gettext_lazy("Warn before"),
        help_text=gettext_lazy(
            "“Breaching soon” starts this long before the target; the assignee is emailed then."
        ),
    )
    time_zone = forms.ChoiceField(choices=time_zone_choices, label=gettext_lazy("Time zone"))

    class Meta:
        model = ResponsePolicy
        fields = [
            "enabled", "first_response_minutes", "next_response_minutes", "warn_minutes",
            "time_zone", "weekly_hours", "holidays",
        ]  # fmt: skip
        labels = {
            "enabled": gettext_lazy("Track response targets"),
            "weekly_hours": gettext_lazy("Business hours"),
            "holidays": gettext_lazy("Holidays"),
        }
        help_texts = {
            "weekly_hours": gettext_lazy(
                "One period per line, in the project's time zone, e.g. “Mon-Fri 09:00-17:00”. "
                "Empty: round the clock, every day."
            ),
            "holidays": gettext_lazy(
                "Dates on which the clock does not run, e.g. 2026-12-25, one per line."
            ),
        }
        widgets = {
            "weekly_hours": forms.Textarea(attrs={"rows": 4, "placeholder": "Mon-Fri 09:00-17:00"}),
            "holidays": forms.Textarea(attrs={"rows": 3, "placeholder": "2026-12-25"}),
        }

    def clean_weekly_hours(self) -> str:
        text: str = self.cleaned_data["weekly_hours"]
        try:
            parse_week(text)
        except ScheduleError as error:
            raise ValidationError(str(error)) from None
        return text.strip()

    def clean_holidays(self) -> str:
        text: str = self.cleaned_data["holidays"]
        try:
            parse_holidays(text)
        except ScheduleError as error:
            raise ValidationError(str(error)) from None
        return text.strip()


class LabelTargetForm(forms.Form):
    label = forms.ModelChoiceField(queryset=Label.objects.none(), label=gettext_lazy("Label"))
    first_response_minutes = DurationField(label=gettext_lazy("First response within"))
    next_response_minutes = DurationField(label=gettext_lazy("Next response within"))

    def __init__(self, *args: Any, labels: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"].queryset = labels  # type: ignore[attr-defined]
