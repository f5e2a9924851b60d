from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def ago(value: datetime | None) -> str:
    """'just now', '5 minutes ago', '2 days, 3 hours ago'."""
    if value is None:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def waited(since: datetime | None) -> str:
    """How long since ``since``, in its largest unit: '< 1 min', '12 min', '3 h', '2 d'. Short
    enough for a tracker row ("waiting 3 h"); the exact time goes in a title."""
    if since is None:
        return ""
    minutes = int((timezone.now() - since).total_seconds() // 60)
    if minutes < 1:
        return "< 1 min"
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"
