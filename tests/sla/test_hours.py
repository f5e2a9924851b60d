"""Business-hours arithmetic: weekends, holidays, time zones and the days the clocks change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sla.hours import BusinessHours, ScheduleError, format_week, parse_holidays, parse_week

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = parse_week("Mon-Fri 09:00-17:00")


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)  # type: ignore[misc]


def hours(**kwargs: object) -> BusinessHours:
    return BusinessHours(
        zone=kwargs.get("zone", BERLIN),
        week=kwargs.get("week", OFFICE),  # type: ignore[arg-type]
        holidays=kwargs.get("holidays", frozenset()),
    )  # type: ignore[arg-type]


def test_inside_one_working_day_counts_real_time() -> None:
    assert hours().seconds_between(berlin(2026, 12, 2, 10), berlin(2026, 12, 2, 12, 30)) == 9000


def test_night_and_weekend_do_not_count() -> None:
    # Friday 16:00 → Monday 10:00 is one hour on Friday and one on Monday.
    assert hours().seconds_between(berlin(2026, 12, 4, 16), berlin(2026, 12, 7, 10)) == 7200


def test_due_time_skips_the_weekend() -> None:
    due = hours().add(berlin(2026, 12, 4, 15), 4 * 3600)
    assert due == berlin(2026, 12, 7, 11).astimezone(UTC)


def test_a_message_outside_hours_starts_counting_at_opening() -> None:
    due = hours().add(berlin(2026, 12, 5, 22), 3600)  # Saturday night
    assert due == berlin(2026, 12, 7, 10).astimezone(UTC)


def test_holidays_do_not_count() -> None:
    office = hours(holidays=parse_holidays("2026-12-24, 2026-12-25"))
    due = office.add(berlin(2026, 12, 23, 16), 2 * 3600)
    # One hour on the 23rd; the 24th and 25th are holidays, the 26th/27th a weekend.
    assert due == berlin(2026, 12, 28, 10).astimezone(UTC)
    assert office.seconds_between(berlin(2026, 12, 23), berlin(2026, 12, 29)) == 8 * 3600 * 2


def test_the_zone_decides_which_instants_are_business_hours() -> None:
    tokyo = hours(zone=ZoneInfo("Asia/Tokyo"))
    # 09:00 in Tokyo is 00:00 UTC; 10:00 UTC is 19:00 in Tokyo, after closing.
    start = datetime(2026, 12, 2, 0, tzinfo=UTC)
    assert tokyo.seconds_between(start, start + timedelta(hours=10)) == 8 * 3600
    assert tokyo.add(datetime(2026, 12, 2, 8, tzinfo=UTC), 3600) == datetime(
        2026, 12, 3, 1, tzinfo=UTC
    )


def test_a_round_the_clock_day_lasts_25_hours_when_the_clocks_go_back() -> None:
    always_sunday = hours(week=parse_week("Sun 00:00-24:00"))
    # Europe left summer time on Sunday 2026-10-25.
    assert always_sunday.seconds_between(berlin(2026, 10, 24), berlin(2026, 10, 27)) == 25 * 3600
    assert always_sunday.seconds_between(berlin(2026, 3, 28), berlin(2026, 3, 31)) == 23 * 3600


def test_office_hours_across_the_spring_change_stay_local() -> None:
    # Friday 16:00 CET (15:00 UTC) + 2 h → Monday 10:00 CEST, which is 08:00 UTC.
    due = hours().add(berlin(2026, 3, 27, 16), 2 * 3600)
    assert due == datetime(2026, 3, 30, 8, tzinfo=UTC)


def test_a_period_starting_in_the_missing_hour_is_read_with_the_winter_offset() -> None:
    night = hours(week=parse_week("Sun 02:30-04:00"))
    # 2026-03-29 02:30 does not exist in Berlin; read as 02:30 CET it is 03:30 CEST (01:30 UTC).
    assert night.seconds_between(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 1800
    assert night.add(berlin(2026, 3, 29), 600) == datetime(2026, 3, 29, 1, 40, tzinfo=UTC)


def test_round_the_clock_is_plain_arithmetic() -> None:
    always = BusinessHours()
    start = datetime(2026, 12, 2, 10, tzinfo=UTC)
    assert always.always
    assert always.add(start, 90) == start + timedelta(seconds=90)
    assert always.seconds_between(start, start + timedelta(days=3)) == 3 * 86400


def test_no_hours_at_all_is_never_due() -> None:
    assert hours(week=parse_week("")).add(berlin(2026, 12, 2), 60) is None


def test_add_and_seconds_between_agree() -> None:
    office = hours(
        week=parse_week("Mon-Thu 08:00-12:00, Mon-Thu 13:00-17:30; Fri 08:00-14:00"),
        holidays=parse_holidays("2026-12-31"),
    )
    start = berlin(2026, 12, 2, 11, 17)
    for minutes in (1, 45, 43 * 60 + 1, 5 * 8 * 60, 12_345):
        due = office.add(start, minutes * 60)
        assert due is not None
        assert office.seconds_between(start, due) == minutes * 60


def test_schedule_reads_ranges_wrapping_weeks_and_midnight() -> None:
    week = parse_week("Fri-Mon 20:00-24:00\nWed 09:00-12:00; Wed 13:00-17:00")
    assert week[4] == week[5] == week[6] == week[0] == ((20 * 60, 24 * 60),)
    assert week[2] == ((540, 720), (780, 1020))
    assert week[1] == week[3] == ()
    assert parse_week(format_week(week)) == week


@pytest.mark.parametrize(
    "text",
    [
        "Monday 09:00-17:00",
        "Mon 9-17",
        "Mon 17:00-09:00",
        "Mon 09:00-25:00",
        "Mon 09:00-12:00, Mon 11:00-13:00",
        "Mon",
    ],
)
def test_unreadable_schedules_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_week(text)


def test_holidays_are_iso_dates() -> None:
    assert parse_holidays("2026-12-25\n2027-01-01") == {date(2026, 12, 25), date(2027, 1, 1)}
    with pytest.raises(ScheduleError):
        parse_holidays("25.12.2026")
