"""Business hours: how much of a span of real time the response clock counts, and when it runs out.

A project's hours are a weekly schedule in its own time zone (``Mon-Fri 09:00-17:00``) minus its
holidays (local dates). The arithmetic is done on real instants: each business period of a local
day is turned into a UTC interval through the zone, so a day on which the clocks change is as long
as it really is (a 00:00-24:00 day lasts 23 or 25 hours). A time in the hour that does not exist
is read with the offset before the change (``fold=0``, PEP 495): 02:30 on the spring-forward night
in Berlin is 03:30 summer time; a time that occurs twice is its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
# How far ahead a due time is looked for before the schedule is taken to have no hours left
# (only a schedule that is all holidays gets there).
_HORIZON = timedelta(days=3 * 366)
_WINDOW = timedelta(days=14)

Period = tuple[int, int]  # minutes after local midnight: [start, end), end ≤ 1440


class ScheduleError(ValueError):
    """A weekly schedule or holiday list that cannot be read; the message says what is wrong."""


@dataclass(frozen=True)
class BusinessHours:
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # Monday first; each day's periods sorted and not overlapping.
    week: tuple[tuple[Period, ...], ...] = (((0, MINUTES_PER_DAY),),) * 7
    holidays: frozenset[date] = frozenset()

    @property
    def always(self) -> bool:
        return not self.holidays and all(day == ((0, MINUTES_PER_DAY),) for day in self.week)

    def periods(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The business periods overlapping ``[start, end)``, clipped to it, in UTC, in order."""
        if end <= start:
            return
        if self.always:
            yield start.astimezone(UTC), end.astimezone(UTC)
            return
        # A local day may start up to a day before or after the UTC one (zones reach ±14 h).
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date() + timedelta(days=1)
        while day <= last:
            if day not in self.holidays:
                for first, until in self.week[day.weekday()]:
                    period_start = max(_instant(day, first, self.zone), start)
                    period_end = min(_instant(day, until, self.zone), end)
                    if period_start < period_end:
                        yield period_start.astimezone(UTC), period_end.astimezone(UTC)
            day += timedelta(days=1)

    def seconds_between(self, start: datetime, end: datetime) -> int:
        """Business seconds in ``[start, end)``."""
        total = sum(
            ((until - since) for since, until in self.periods(start, end)), start=timedelta()
        )
        return int(total.total_seconds())

    def add(self, start: datetime, seconds: int) -> datetime | None:
        """The instant at which ``seconds`` business seconds have passed since ``start``.

        None when the schedule has no hours left within three years (e.g. an empty week).
        """
        if seconds <= 0:
            return start.astimezone(UTC)
        if self.always:
            return start.astimezone(UTC) + timedelta(seconds=seconds)
        if not any(self.week):
            return None
        left = timedelta(seconds=seconds)
        window_start = start
        while window_start - start < _HORIZON:
            window_end = window_start + _WINDOW
            for since, until in self.periods(window_start, window_end):
                if until - since >= left:
                    return since + left
                left -= until - since
            window_start = window_end
        return None


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    if minutes >= MINUTES_PER_DAY:
        day, minutes = day + timedelta(days=1), minutes - MINUTES_PER_DAY
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(UTC)


_PERIOD = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_DAY_RANGE = re.compile(r"^([a-z]{3})(?:\s*-\s*([a-z]{3}))?$")


def parse_week(text: str) -> tuple[tuple[Period, ...], ...]:
    """Read a weekly schedule such as ``Mon-Fri 09:00-17:00, Sat 10:00-14:00``.

    Entries are separated by commas, semicolons or new lines; a day range may wrap (``Fri-Mon``);
    a day may have several periods (``Mon 08:00-12:00, Mon 13:00-17:00``); ``24:00`` ends a day.
    An empty text means no business hours at all (the clock never runs).
    """
    days: list[list[Period]] = [[] for _day in DAYS]
    for entry in filter(None, (part.strip() for part in re.split(r"[,;\n]", text))):
        try:
            which, hours = entry.lower().split(None, 1)
        except ValueError:
            message = _("“%(entry)s” needs days and hours, e.g. “Mon-Fri 09:00-17:00”.")
            raise ScheduleError(message % {"entry": entry}) from None
        for day in _days(which, entry):
            days[day].append(_period(hours.strip(), entry))
    week = []
    for periods in days:
        periods.sort()
        for (_start, earlier_end), (later_start, _end) in pairwise(periods):
            if later_start < earlier_end:
                raise ScheduleError(_("Two periods of the same day overlap."))
        week.append(tuple(periods))
    return tuple(week)


def _days(text: str, entry: str) -> list[int]:
    found = _DAY_RANGE.match(text)
    if not found or found.group(1) not in DAYS or (found.group(2) or "mon") not in DAYS:
        message = _("“%(entry)s”: days are written Mon, Tue, … Sun, or a range like Mon-Fri.")
        raise ScheduleError(message % {"entry": entry})
    first = DAYS.index(found.group(1))
    last = DAYS.index(found.group(2)) if found.group(2) else first
    return [(first + step) % 7 for step in range((last - first) % 7 + 1)]


def _period(text: str, entry: str) -> Period:
    found = _PERIOD.match(text)
    if not found:
        raise ScheduleError(
            _("“%(entry)s”: hours are written like 09:00-17:00.") % {"entry": entry}
        )
    start_h, start_m, end_h, end_m = (int(part) for part in found.groups())
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start_m > 59 or end_m > 59 or start >= MINUTES_PER_DAY or end > MINUTES_PER_DAY:
        message = _("“%(entry)s”: %(text)s is not a time of day.")
        raise ScheduleError(message % {"entry": entry, "text": text})
    if end <= start:
        message = _("“%(entry)s”: a period must end after it starts (24:00 is midnight).")
        raise ScheduleError(message % {"entry": entry})
    return start, end


def format_week(week: tuple[tuple[Period, ...], ...]) -> str:
    """The schedule written the way parse_week reads it, one line per day with hours."""
    lines = []
    for index, periods in enumerate(week):
        for start, end in periods:
            lines.append(f"{DAYS[index].title()} {_clock(start)}-{_clock(end)}")
    return "\n".join(lines)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_holidays(text: str) -> frozenset[date]:
    """Local dates, ISO form (``2026-12-25``), separated by commas, spaces or new lines."""
    found = set()
    for word in filter(None, re.split(r"[\s,;]+", text)):
        try:
            found.add(date.fromisoformat(word))
        except ValueError:
            raise ScheduleError(
                _("“%(word)s” is not a date like 2026-12-25.") % {"word": word}
            ) from None
    return frozenset(found)
