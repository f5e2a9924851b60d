"""A ticket's response clock in a few words: "due in 35 min", "overdue 2 h", "paused"."""

from __future__ import annotations

from django import template
from django.utils import timezone
from django.utils.translation import gettext as _

from sla.models import ResponseClock

register = template.Library()


def _span(minutes: int) -> str:
    if minutes < 1:
        return _("< 1 min")
    if minutes < 60:
        return _("%(n)s min") % {"n": minutes}
    if minutes < 24 * 60:
        return _("%(n)s h") % {"n": minutes // 60}
    return _("%(n)s d") % {"n": minutes // (24 * 60)}


@register.filter
def response_state(clock: ResponseClock | str | None) -> str:
    """overdue, soon (the sweep has warned), running or paused; empty without a clock."""
    if not isinstance(clock, ResponseClock):  # none: the template's empty string
        return ""
    if clock.due_at is None:
        return "paused"
    if clock.due_at <= timezone.now():
        return "overdue"
    return "soon" if clock.warned_at is not None else "running"


@register.filter
def response_due(clock: ResponseClock | str | None) -> str:
    state = response_state(clock)
    if not state or not isinstance(clock, ResponseClock):
        return ""
    if state == "paused" or clock.due_at is None:
        return _("response clock paused")
    minutes = int(abs((clock.due_at - timezone.now()).total_seconds()) // 60)
    if state == "overdue":
        return _("overdue %(span)s") % {"span": _span(minutes)}
    return _("due in %(span)s") % {"span": _span(minutes)}
