"""Judging a check date by date: baselines from earlier dates, before/after of a rebuild, and the
failing dates as ranges with their values.

A ``per_date: true`` check's query returns one row per date in a ``date`` column. Each date of the
range that the calendar expects (and any other date the query returned) is judged on its own:

- its row's metrics, with ``expected_dates``/``calendar_dates``/``range_days`` for that one date;
- baseline calls (``median(rows, 14)``, ``quantile(rows, 0.1, 28)``, ``last_week(rows)``) computed
  from the metric's values on earlier dates: the query's own rows first, then, before the range,
  the values stored for the check in ``check_date``;
- ``stable:`` metrics compared with the values last stored for that date (a rebuild that changed
  them beyond ``tolerance`` fails the date);
- an expected date with no row fails: its data is missing.

Nothing here touches the warehouse or the store: :class:`~runbook.checks.runner.CheckRunner`
queries both and hands the rows in.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook.expectations import Baseline, Condition, Expectation, show

MAX_RANGES_SHOWN = 3


@dataclass
class DateVerdict:
    """One date judged: its metrics, conditions, changes against the stored values, verdict."""

    date: dt.date
    metrics: dict[str, Any]
    conditions: list[Condition] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.changes and all(c.passed for c in self.conditions)

    def failed_conditions(self) -> list[Condition]:
        return [c for c in self.conditions if not c.passed]

    def explain(self) -> str:
        """What failed on this date: ``pct_populated >= 45 (12.5 >= 45)``."""
        if self.error:
            return self.error
        parts = [c.explain() for c in self.failed_conditions()]
        parts += [_change_text(change) for change in self.changes]
        return "; ".join(parts)

    def stored_conditions(self) -> list[dict[str, Any]]:
        found = [c.as_dict() for c in self.conditions]
        for change in self.changes:
            found.append(
                {"expr": _change_text(change), "left": change["after"], "op": None, "right": change["before"],
                 "passed": False, "stable": change["metric"]}
            )  # fmt: skip
        return found


def as_date(value: Any) -> dt.date | None:
    """A ``date`` column's value as a date (DATE, DATETIME/TIMESTAMP or ISO text), else None."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class History:
    """Earlier values of a check's metrics: the query's own rows and, before the range, the
    stored ones (``before``: newest date first; ``at``: specific dates such as a week before)."""

    own: Mapping[dt.date, Mapping[str, Any]]
    before: Sequence[tuple[dt.date, Mapping[str, Any]]] = ()
    at: Mapping[dt.date, Mapping[str, Any]] = field(default_factory=dict)

    def baselines(self, day: dt.date, wanted: Sequence[Baseline]) -> dict[Baseline, Any]:
        found: dict[Baseline, Any] = {}
        earlier: list[Mapping[str, Any]] | None = None
        for baseline in wanted:
            if baseline.function == "last_week":
                week = day - dt.timedelta(days=7)
                row = self.own.get(week) or self.at.get(week)
                value = row.get(baseline.metric) if row is not None else None
                found[baseline] = baseline.compute([value] if value is not None else [])
                continue
            if earlier is None:
                own = [self.own[d] for d in sorted(self.own, reverse=True) if d < day]
                earlier = own + [metrics for d, metrics in self.before if d < day and d not in self.own]
            values = [row.get(baseline.metric) for row in earlier]
            found[baseline] = baseline.compute([v for v in values if number(v)])
        return found


def judge_date(
    day: dt.date,
    row: Mapping[str, Any] | None,
    expectations: Sequence[Expectation],
    calendar_values: Mapping[str, Any],
    history: History,
    stable: Sequence[str],
    tolerance: float,
    previous: Mapping[str, Any] | None,
) -> DateVerdict:
    """Judge one date: ``row`` is its query row (None: the query returned none for it),
    ``previous`` the metrics stored for it before (for ``stable:``)."""
    if row is None:
        return DateVerdict(day, {}, error=f"no row for {day}: the query returned nothing for this date")
    metrics = {key: value for key, value in row.items() if key != "date"}
    values = {**calendar_values, **metrics}
    wanted = sorted({b for e in expectations for b in e.baselines}, key=repr)
    baselines = history.baselines(day, wanted) if wanted else {}
    conditions = [e.evaluate(values, baselines) for e in expectations]
    changes = []
    if previous is not None:
        for metric in stable:
            if metric not in previous and metric not in metrics:
                continue
            change = compare(previous.get(metric), metrics.get(metric), tolerance)
            if change is not None:
                changes.append({"metric": metric, **change})
    return DateVerdict(day, metrics, conditions, changes)


def compare(before: Any, after: Any, tolerance: float) -> dict[str, Any] | None:
    """The change from ``before`` to ``after`` when it is beyond ``tolerance`` (relative), else None."""
    if number(before) and number(after):
        if before == after:
            return None
        relative = abs(after - before) / abs(before) if before != 0 else math.inf
        if relative <= tolerance:
            return None
        return {
            "before": before,
            "after": after,
            "change": None if math.isinf(relative) else round(relative, 6),
        }
    if before == after:
        return None
    return {"before": before, "after": after, "change": None}


def _change_text(change: Mapping[str, Any]) -> str:
    before, after = change["before"], change["after"]
    text = f"{change['metric']} changed by the rebuild ({show(before)} -> {show(after)}"
    if number(before) and number(after) and before != 0:
        text += f", {(after - before) / abs(before) * 100:+.1f}%"
    return text + ")"


def failed_ranges(verdicts: Sequence[DateVerdict]) -> list[dict[str, Any]]:
    """The failed dates as ranges of consecutive judged dates, each with its failed conditions
    and the spread of the metrics they name (``pct_populated`` 0..12.5)."""
    ranges: list[list[DateVerdict]] = []
    previous_failed = False
    for verdict in verdicts:
        if verdict.passed:
            previous_failed = False
            continue
        if previous_failed:
            ranges[-1].append(verdict)
        else:
            ranges.append([verdict])
        previous_failed = True
    return [_range(group) for group in ranges]


def _range(group: list[DateVerdict]) -> dict[str, Any]:
    first, last = group[0].date, group[-1].date
    failed = list(dict.fromkeys(c.expr for v in group for c in v.failed_conditions()))
    failed += list(dict.fromkeys(f"{c['metric']} stable" for v in group for c in v.changes))
    errors = list(dict.fromkeys(v.error for v in group if v.error))
    names = list(
        dict.fromkeys(
            name for v in group for c in v.failed_conditions() for name in _names(c) if name in v.metrics
        )
    )
    names += [c["metric"] for v in group for c in v.changes if c["metric"] not in names]
    values: dict[str, dict[str, Any]] = {}
    for name in names:
        found = [v.metrics[name] for v in group if number(v.metrics.get(name))]
        if found:
            values[name] = {"min": min(found), "max": max(found)}
    if len(group) == 1:
        explain = group[0].explain()
    else:
        spread = [
            f"{name} {show(bounds['min'])}"
            + (f"..{show(bounds['max'])}" if bounds["max"] != bounds["min"] else "")
            for name, bounds in values.items()
        ]
        explain = "; ".join([*failed, *errors] + ([", ".join(spread)] if spread else []))
    span = str(first) if first == last else f"{first}..{last}"
    label = f"{span} ({len(group)} dates)" if len(group) > 1 else span
    return {
        "start": first.isoformat(),
        "end": last.isoformat(),
        "dates": len(group),
        "failed": failed,
        "errors": errors,
        "values": values,
        "text": f"{label}: {explain}",
    }


def _names(condition: Condition) -> list[str]:
    import re

    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*", condition.expr)


def ranges_summary(ranges: Sequence[Mapping[str, Any]], total_dates: int) -> str:
    """``failed on 8 of 120 dates: 2024-11-05..2024-11-11 (7 dates): ...; 2024-12-01: ...``."""
    failed = sum(int(r["dates"]) for r in ranges)
    shown = "; ".join(str(r["text"]) for r in ranges[:MAX_RANGES_SHOWN])
    more = len(ranges) - MAX_RANGES_SHOWN
    tail = f"; and {more} more range(s)" if more > 0 else ""
    return f"failed on {failed} of {total_dates} date(s): {shown}{tail}"
