"""The date calendar: the requested range minus off-days minus bootstrap windows.

Nothing is dropped silently: every date in the range comes back either as runnable or with the
reason it is skipped (``off_day``, ``bootstrap``).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Iterator

from runbook.config import CalendarConfig

OFF_DAY = "off_day"
BOOTSTRAP = "bootstrap"


def date_range(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


class Calendar:
    """Decides for each date whether a processor runs it, and if not, why.

    ``active_dates`` (from a ``calendar: query:``) restricts the runnable dates to those the
    warehouse lists; the others are off-days.
    """

    def __init__(self, config: CalendarConfig, active_dates: Iterable[dt.date] | None = None) -> None:
        self.config = config
        self._off_days = frozenset(config.off_days)
        self._off_weekdays = config.off_weekday_numbers
        self._seasons = sorted(config.seasons)
        self._active = frozenset(active_dates) if active_dates is not None else None

    def skip_reason(self, day: dt.date, bootstrap_days: int) -> str | None:
        """None when ``day`` is runnable, else why not."""
        if day in self._off_days or day.weekday() in self._off_weekdays:
            return OFF_DAY
        if self._active is not None and day not in self._active:
            return OFF_DAY
        if bootstrap_days and self._seasons:
            index = bisect.bisect_right(self._seasons, day) - 1
            if index >= 0 and (day - self._seasons[index]).days < bootstrap_days:
                return BOOTSTRAP
        return None

    def dates(
        self, start: dt.date, end: dt.date, bootstrap_days: int = 0
    ) -> list[tuple[dt.date, str | None]]:
        """Every date of [start, end] with its skip reason (None = runnable)."""
        return [(day, self.skip_reason(day, bootstrap_days)) for day in date_range(start, end)]

    def expected_dates(self, start: dt.date, end: dt.date, bootstrap_days: int = 0) -> int:
        """How many dates of [start, end] a processor with this bootstrap window should build."""
        return sum(1 for _, reason in self.dates(start, end, bootstrap_days) if reason is None)
