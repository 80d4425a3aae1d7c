"""Working-day arithmetic of the second-opinion deadline (R-SECOND): weekends, holidays,
transferred working Saturdays, year ends, and the calendar shipped in config.yaml."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from conclusions.workdays import WorkCalendar
from telemed.config import load_settings

PLAIN = WorkCalendar()
SHIPPED = WorkCalendar.from_rules(
    load_settings(Path(__file__).parents[2] / "config.yaml", environ={}).rules
)


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (date(2026, 1, 19), 1, date(2026, 1, 20)),  # Monday -> Tuesday
        (date(2026, 1, 23), 1, date(2026, 1, 26)),  # Friday -> over the weekend to Monday
        (date(2026, 1, 24), 1, date(2026, 1, 26)),  # Saturday: the count starts on Monday
        (date(2026, 1, 25), 1, date(2026, 1, 26)),  # Sunday likewise
        (date(2026, 1, 19), 5, date(2026, 1, 26)),  # a full week
        (date(2026, 1, 19), 14, date(2026, 2, 6)),  # the default: two weeks and four days
        (date(2026, 1, 24), 14, date(2026, 2, 12)),  # asked on a Saturday
        (date(2026, 1, 19), 0, date(2026, 1, 19)),
        (date(2026, 1, 24), 0, date(2026, 1, 24)),  # zero days from a weekend: that day
    ],
)
def test_weekends_are_skipped(start: date, days: int, due: date) -> None:
    assert PLAIN.add_working_days(start, days) == due


def test_a_holiday_on_a_weekday_is_skipped() -> None:
    cal = WorkCalendar.of([date(2026, 1, 21)])  # a Wednesday off
    assert cal.add_working_days(date(2026, 1, 20), 1) == date(2026, 1, 22)
    assert cal.add_working_days(date(2026, 1, 19), 5) == date(2026, 1, 27)
    assert cal.add_working_days(date(2026, 1, 21), 1) == date(2026, 1, 22)  # start on it


def test_a_holiday_on_a_weekend_changes_nothing() -> None:
    cal = WorkCalendar.of([date(2026, 3, 8)])  # a Sunday
    assert cal.add_working_days(date(2026, 3, 6), 1) == date(2026, 3, 9)


def test_a_transferred_working_saturday_counts() -> None:
    cal = WorkCalendar.of([date(2025, 11, 3)], working_weekends=[date(2025, 11, 1)])
    assert cal.is_working_day(date(2025, 11, 1))  # Saturday made a working day
    assert not cal.is_working_day(date(2025, 11, 3))  # its Monday off
    assert cal.add_working_days(date(2025, 10, 31), 1) == date(2025, 11, 1)
    assert cal.add_working_days(date(2025, 10, 31), 2) == date(2025, 11, 4)


def test_the_year_end_is_crossed_with_the_new_year_holidays() -> None:
    """Asked on 24 December 2026 (Thursday): 31 December 2026 and 1-8 January 2027 are off."""
    assert SHIPPED.add_working_days(date(2026, 12, 24), 1) == date(2026, 12, 25)
    assert SHIPPED.add_working_days(date(2026, 12, 24), 4) == date(2026, 12, 30)
    assert SHIPPED.add_working_days(date(2026, 12, 24), 5) == date(2027, 1, 11)
    assert SHIPPED.add_working_days(date(2026, 12, 24), 14) == date(2027, 1, 22)
    # Without holidays only the weekends would count.
    assert PLAIN.add_working_days(date(2026, 12, 24), 14) == date(2027, 1, 13)


def test_the_2026_new_year_holidays_run_to_the_eleventh_of_january() -> None:
    assert SHIPPED.add_working_days(date(2026, 1, 1), 1) == date(2026, 1, 12)
    assert SHIPPED.add_working_days(date(2026, 1, 1), 14) == date(2026, 1, 29)


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 1, 9),  # moved from Saturday 3 January
        date(2026, 2, 23),
        date(2026, 3, 9),  # 8 March is a Sunday
        date(2026, 5, 1),
        date(2026, 5, 11),  # 9 May is a Saturday
        date(2026, 6, 12),
        date(2026, 11, 4),
        date(2026, 12, 31),  # moved from Sunday 4 January
        date(2027, 1, 8),
        date(2027, 2, 23),
        date(2027, 3, 8),
        date(2027, 5, 3),  # 1 May is a Saturday
        date(2027, 5, 10),  # 9 May is a Sunday
        date(2027, 6, 14),  # 12 June is a Saturday
        date(2027, 11, 4),
    ],
)
def test_the_shipped_calendar_has_the_russian_days_off(day: date) -> None:
    assert day.weekday() < 5 and not SHIPPED.is_working_day(day)


def test_the_shipped_calendar_has_the_expected_number_of_working_days_in_2026() -> None:
    """247 working days in 2026 under the decree of 24 September 2025."""
    start, end = date(2025, 12, 31), date(2026, 12, 31)
    assert SHIPPED.working_days_between(start, end) == 247


def test_counting_between_two_dates_matches_adding() -> None:
    start = date(2026, 4, 24)
    for days in range(0, 40):
        due = SHIPPED.add_working_days(start, days)
        assert SHIPPED.working_days_between(start, due) == days
    assert SHIPPED.working_days_between(start, start - timedelta(days=3)) == 0


def test_negative_days_are_refused() -> None:
    with pytest.raises(ValueError):
        PLAIN.add_working_days(date(2026, 1, 19), -1)
