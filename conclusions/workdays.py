"""Working-day arithmetic for the second-opinion deadline (R-SECOND): pure, no clock, no I/O.

A working day is Monday to Friday, except the configured holidays, plus the
weekend days a transfer decree made working days (Russian production
calendars move days off around public holidays).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from telemed.config import RulesSettings

_DAY = timedelta(days=1)
_SATURDAY = 5


@dataclass(frozen=True)
class WorkCalendar:
    """Which days are working days: weekdays, less holidays, plus working weekend days."""

    holidays: frozenset[date] = frozenset()
    working_weekends: frozenset[date] = frozenset()

    @classmethod
    def of(cls, holidays: Iterable[date], working_weekends: Iterable[date] = ()) -> WorkCalendar:
        """A calendar from any iterables of dates (config lists, test literals)."""
        return cls(frozenset(holidays), frozenset(working_weekends))

    @classmethod
    def from_rules(cls, rules: RulesSettings) -> WorkCalendar:
        """The calendar configured in `rules.holidays` and `rules.working_weekends`."""
        return cls.of(rules.holidays, rules.working_weekends)

    def is_working_day(self, day: date) -> bool:
        """True for a working day."""
        if day in self.working_weekends:
            return True
        return day.weekday() < _SATURDAY and day not in self.holidays

    def add_working_days(self, start: date, days: int) -> date:
        """The date `days` working days after `start` (`start` itself never counts).

        Something handed in on a Saturday and due in 1 working day is due on
        Monday; handed in on a Monday, on Tuesday. `days=0` gives `start`.
        """
        if days < 0:
            raise ValueError("days must not be negative")
        day = start
        left = days
        while left:
            day += _DAY
            if self.is_working_day(day):
                left -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """How many working days lie after `start` up to and including `end` (0 if none)."""
        count = 0
        day = start
        while day < end:
            day += _DAY
            if self.is_working_day(day):
                count += 1
        return count
