"""When a snooze ends, as people write it: ``3d``, ``2h``, ``1w 2d``, ``2026-12-10``,
``2026-12-10 14:00`` or ``reply`` (until the customer writes again).

A date alone means 09:00 that day and a date with a time means that time, both in the project's
time zone (its response targets' one) or, without one, the instance's (``TIME_ZONE``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from projects.models import Project

_SPAN = re.compile(r"(\d{1,4})\s*(w|d|h|m)\b")
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
          "m": timedelta(minutes=1)}  # fmt: skip
MAX_SNOOZE = timedelta(days=366)
UNTIL_REPLY = ("reply", "customer", "until reply", "until the customer replies")
MORNING = time(9, 0)


class SnoozeError(ValueError):
    """A snooze that cannot be read or is out of bounds; the message says why."""


def project_zone(project: Project) -> ZoneInfo:
    from sla.models import ResponsePolicy

    policy = ResponsePolicy.objects.filter(project=project).only("time_zone").first()
    return ZoneInfo(policy.time_zone if policy is not None else settings.TIME_ZONE)


def snooze_until(text: str, *, project: Project, now: datetime | None = None) -> datetime | None:
    """The instant the snooze ends; None: until the customer replies."""
    text = " ".join(text.lower().split())
    now = now or timezone.now()
    if not text:
        raise SnoozeError(_("say for how long: 3d, 4h, 2026-12-10 or reply"))
    if text in UNTIL_REPLY:
        return None
    spans = _SPAN.findall(text)
    if spans and _SPAN.sub("", text).strip() == "":
        until = now + sum((int(n) * _UNITS[unit] for n, unit in spans), start=timedelta())
    else:
        until = _moment(text, project).astimezone(UTC)
    if until <= now:
        raise SnoozeError(_("that is not in the future"))
    if until - now > MAX_SNOOZE:
        raise SnoozeError(_("a snooze lasts a year at most"))
    return until


def _moment(text: str, project: Project) -> datetime:
    zone = project_zone(project)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), MORNING, tzinfo=zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SnoozeError(
            _("“%(text)s” is not a duration (3d, 4h, 1w) or a date (2026-12-10 14:00)")
            % {"text": text[:40]}
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def snooze_words(until: datetime | None) -> str:
    if until is None:
        return _("until the customer replies")
    return _("until %(when)s UTC") % {"when": f"{until.astimezone(UTC):%Y-%m-%d %H:%M}"}
