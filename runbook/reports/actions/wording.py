"""Dates in the words and commands of next actions: date ranges and run progress as text, runs of
consecutive days, and :func:`segments`, which cuts dates into the ranges of ``runbook run``
commands. Pure functions of dates, strings and runs; they do not read
:class:`~runbook.reports.actions.model.Facts`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from runbook.formatting import plural
from runbook.formatting import span as date_span
from runbook.snapshots.model import RunSnapshot
from runbook.snapshots.runs import date_ranges


def _ranges_text(days: Iterable[str], limit: int = 3) -> str:
    chosen = set(days)
    found = date_ranges(sorted(chosen), chosen)
    text = ", ".join(date_span(r.start, r.end) for r in found[:limit])
    return text + (f" and {plural(len(found) - limit, 'more range')}" if len(found) > limit else "")


def _per_processor(dates: Mapping[str, set[str]], order: Sequence[str]) -> str:
    parts = [f"{name} {_ranges_text(dates[name])}" for name in order if dates.get(name)]
    return "; ".join(parts)


def _progress(run: RunSnapshot) -> str:
    p = run.progress
    return f"{p.succeeded}/{p.work} tasks"


def _last(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def segments(
    wanted: Mapping[str, set[str]], selected: Mapping[str, set[str]], order: Sequence[str]
) -> list[tuple[list[str], str, str, int]]:
    """Commands ``(processors, start, end, dates)`` that together select exactly ``wanted``.

    A command ``runbook run P... --only-gaps --start S --end E`` selects every date of
    ``selected[P]`` in [S, E]; ``wanted[P]`` is the part of it no other action covers. Ranges
    are grown date by date while no listed processor would select a date it should not.
    """
    unwanted = {name: sorted(selected.get(name, set()) - wanted.get(name, set())) for name in order}
    by_day: dict[str, list[str]] = {}
    for name in order:
        for day in wanted.get(name, ()):
            by_day.setdefault(day, []).append(name)
    found: list[tuple[list[str], str, str, int]] = []
    names: set[str] = set()
    first = last = ""
    count = 0

    def clash(members: Iterable[str], low: str, high: str) -> bool:
        for name in members:
            excluded = unwanted.get(name, [])
            position = bisect.bisect_left(excluded, low)
            if position < len(excluded) and excluded[position] <= high:
                return True
        return False

    for day in sorted(by_day):
        members = names | set(by_day[day])
        if names and not clash(members, first, day):
            names, last = members, day
            count += len(by_day[day])
            continue
        if names:
            found.append(([n for n in order if n in names], first, last, count))
        names, first, last, count = set(by_day[day]), day, day, len(by_day[day])
    if names:
        found.append(([n for n in order if n in names], first, last, count))
    return found


def _consecutive(days: Iterable[str]) -> list[tuple[str, str, int]]:
    """(first, last, count) of each run of consecutive calendar days among ``days``."""
    found: list[tuple[str, str, int]] = []
    for day in sorted(set(days)):
        if found and dt.date.fromisoformat(day) - dt.date.fromisoformat(found[-1][1]) == dt.timedelta(days=1):
            found[-1] = (found[-1][0], day, found[-1][2] + 1)
        else:
            found.append((day, day, 1))
    return found


def _span_days(start: str, end: str) -> list[str]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


__all__ = [
    "segments",
]
