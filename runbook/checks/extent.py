"""Extent warnings: say so when the source data reaches beyond the range a run was asked for.

The seeds lost a night to a backfill that stopped at 2024-05-01 while the source went on to
2026-01-03. A processor's ``extent:`` query returns the first and last date of its source
(columns ``first_date`` and ``last_date``, or the first two columns); before a run, runbook counts
the calendar dates of the source outside the requested range (off-days and the calendar query
honoured) and warns about them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runbook.config import RunbookConfig
from runbook.engine.calendar import Calendar
from runbook.state.store import Store
from runbook.warehouse import Warehouse, to_date

EVENT_KIND = "extent_warning"


@dataclass(frozen=True)
class ExtentWarning:
    processor: str
    message: str
    start: dt.date | None = None  # the source's dates outside the range asked for (None when unknown)
    end: dt.date | None = None

    def data(self) -> dict[str, str]:
        """What the ``extent_warning`` event keeps besides its message: the dates not covered."""
        if self.start is None or self.end is None:
            return {}
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    def __str__(self) -> str:
        return self.message


def extent_warnings(
    config: RunbookConfig,
    processors: Sequence[str],
    start: dt.date,
    end: dt.date,
    warehouse: Callable[[], Warehouse],
    calendar: Callable[[dt.date, dt.date], Calendar],
) -> list[ExtentWarning]:
    """Warnings for the ``processors`` whose source data begins before ``start`` or ends after ``end``.

    A failing extent query is a warning too: it must not stop the run it is meant to inform.
    """
    found: list[ExtentWarning] = []
    for name in processors:
        sql = config.processors[name].extent
        if not sql:
            continue
        try:
            first, last = source_bounds(warehouse().query(sql, {"start": start, "end": end}))
        except Exception as exc:  # noqa: BLE001 - reported as a warning, the run goes on
            detail = " ".join(str(exc).split()) or type(exc).__name__
            found.append(ExtentWarning(name, f"{name}: the extent query failed: {detail}"))
            continue
        if first is None and last is None:
            found.append(ExtentWarning(name, f"{name}: the extent query found no source data"))
            continue
        if last is not None and last > end:
            count = _calendar_dates(calendar, end + dt.timedelta(days=1), last)
            if count:
                found.append(
                    ExtentWarning(
                        name,
                        f"{name}: source has data through {last}: {_dates(count)} after your end date "
                        f"{end} {_are(count)} not covered",
                        end + dt.timedelta(days=1),
                        last,
                    )
                )
        if first is not None and first < start:
            count = _calendar_dates(calendar, first, start - dt.timedelta(days=1))
            if count:
                found.append(
                    ExtentWarning(
                        name,
                        f"{name}: source has data from {first}: {_dates(count)} before your start date "
                        f"{start} {_are(count)} not covered",
                        first,
                        start - dt.timedelta(days=1),
                    )
                )
    return found


def record_extent_warnings(store: Store, run_id: int, warnings: Sequence[ExtentWarning]) -> None:
    """Keep the warnings on the run's timeline (event ``extent_warning``)."""
    for warning in warnings:
        store.add_event(
            EVENT_KIND, warning.message, run_id=run_id, processor=warning.processor, data=warning.data()
        )


def source_bounds(rows: list[dict[str, Any]]) -> tuple[dt.date | None, dt.date | None]:
    """(first_date, last_date) from the extent query's first row, by name or else by position."""
    if not rows:
        return None, None
    row = rows[0]
    if "first_date" in row and "last_date" in row:
        first, last = row["first_date"], row["last_date"]
    else:
        values = list(row.values())
        if len(values) < 2:
            raise ValueError("the extent query must return first_date and last_date (or two columns)")
        first, last = values[0], values[1]
    try:
        return to_date(first), to_date(last)
    except ValueError as exc:
        raise ValueError(f"the extent query returned a value that is not a date: {exc}") from None


def _calendar_dates(calendar: Callable[[dt.date, dt.date], Calendar], first: dt.date, last: dt.date) -> int:
    return calendar(first, last).expected_dates(first, last, 0)


def _dates(count: int) -> str:
    return f"{count} date" if count == 1 else f"{count} dates"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"
