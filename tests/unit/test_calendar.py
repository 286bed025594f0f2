"""The calendar: every date is runnable or carries its reason (off_day before bootstrap)."""

from __future__ import annotations

import datetime as dt

from runbook.config import CalendarConfig
from runbook.config.schema import build
from runbook.engine.calendar import BOOTSTRAP, OFF_DAY, Calendar, date_range

D = dt.date


def make(**fields: object) -> Calendar:
    return Calendar(build(CalendarConfig, fields))


def test_date_range_is_inclusive() -> None:
    assert list(date_range(D(2024, 2, 28), D(2024, 3, 1))) == [D(2024, 2, 28), D(2024, 2, 29), D(2024, 3, 1)]
    assert list(date_range(D(2024, 3, 1), D(2024, 2, 28))) == []


def test_off_days_by_list_and_weekday() -> None:
    calendar = make(off_days=["2024-01-03"], off_weekdays=["sat", "Sunday"])
    reasons = dict(calendar.dates(D(2024, 1, 1), D(2024, 1, 8)))
    # 2024-01-01 is a Monday.
    assert [day.day for day, reason in reasons.items() if reason == OFF_DAY] == [3, 6, 7]
    assert [day.day for day, reason in reasons.items() if reason is None] == [1, 2, 4, 5, 8]


def test_bootstrap_window_counts_from_the_latest_season_start() -> None:
    calendar = make(seasons=["2024-10-22", "2023-10-24"])
    window = D(2024, 10, 20), D(2024, 10, 28)
    assert [d.day for d, r in calendar.dates(*window, bootstrap_days=3) if r == BOOTSTRAP] == [22, 23, 24]
    assert all(r is None for _, r in calendar.dates(*window, bootstrap_days=0))
    # Late in the previous season: no bootstrap; early in it: bootstrap.
    assert calendar.skip_reason(D(2024, 6, 1), 30) is None
    assert calendar.skip_reason(D(2023, 11, 1), 30) == BOOTSTRAP
    # Before the first season there is nothing to bootstrap from.
    assert calendar.skip_reason(D(2023, 1, 1), 30) is None


def test_off_day_wins_over_bootstrap_and_expected_dates_counts_runnable() -> None:
    calendar = make(seasons=["2024-10-22"], off_days=["2024-10-23"], bootstrap_days=5)
    assert calendar.skip_reason(D(2024, 10, 23), 5) == OFF_DAY
    assert calendar.skip_reason(D(2024, 10, 24), 5) == BOOTSTRAP
    assert calendar.expected_dates(D(2024, 10, 22), D(2024, 10, 31), 5) == 10 - 5
    assert calendar.expected_dates(D(2024, 10, 22), D(2024, 10, 31), 0) == 10 - 1


def test_active_dates_from_a_query_restrict_runnable_dates() -> None:
    calendar = Calendar(CalendarConfig(off_weekdays=["sun"]), active_dates=[D(2024, 1, 2), D(2024, 1, 7)])
    reasons = dict(calendar.dates(D(2024, 1, 1), D(2024, 1, 7)))
    assert [d.day for d, r in reasons.items() if r is None] == [2]
    assert reasons[D(2024, 1, 7)] == OFF_DAY  # active, but a Sunday
