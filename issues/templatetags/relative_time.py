from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import npgettext_lazy

register = template.Library()

# Django's own units, in their own context: after "… ago" German needs the dative ("vor 2
# Tagen"), where Django's catalogue has the nominative ("2 Tage"). English reads the same.
AGO_STRINGS = {
    "year": npgettext_lazy("ago", "%(num)d year", "%(num)d years", "num"),
    "month": npgettext_lazy("ago", "%(num)d month", "%(num)d months", "num"),
    "week": npgettext_lazy("ago", "%(num)d week", "%(num)d weeks", "num"),
    "day": npgettext_lazy("ago", "%(num)d day", "%(num)d days", "num"),
    "hour": npgettext_lazy("ago", "%(num)d hour", "%(num)d hours", "num"),
    "minute": npgettext_lazy("ago", "%(num)d minute", "%(num)d minutes", "num"),
}


@register.filter
def ago(value: datetime | None) -> str:
    """'just now', '5 minutes ago', '2 days, 3 hours ago'."""
    if value is None:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(value, time_strings=AGO_STRINGS)}


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
