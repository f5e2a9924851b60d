from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def ago(value: datetime | None) -> str:
    """'just now', '5 minutes ago', '2 days, 3 hours ago'."""
    if value is None:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(value)}


@register.filter
def waited(since: datetime | None) -> str:
    """How long since ``since``, in its largest unit: '< 1 min', '12 min', '3 h', '2 d'. Short
    enough for a tracker row ("waiting 3 h"); the exact time goes in a title."""
    if since is None:
        return ""
    minutes = int((timezone.now() - since).total_seconds() // 60)
    if minutes < 1:
        return _("< 1 min")
    if minutes < 60:
        return _("%(n)s min") % {"n": minutes}
    if minutes < 24 * 60:
        return _("%(n)s h") % {"n": minutes // 60}
    return _("%(n)s d") % {"n": minutes // (24 * 60)}
