"""What was ever built: per processor and calendar date, by which run, when, with which code.

A date is *built* when a task of the processor covering it succeeded; the newest such task says
by which run, when and with which code version. A built date is *stale* when that version is not
the processor's current one; an expected date (runnable in the calendar) never built is a *gap*.
``runbook coverage`` shows this per date and as ranges, and ``runbook run --only-gaps`` /
``--only-stale`` fill exactly those dates. The handoff report's phase tables are built from the
same :func:`day_states`.

Everything is read with :meth:`Store.latest_by_date` (a few indexed reads per date), never by
loading every task.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from runbook.calendar import Calendar, date_range
from runbook.config import RunbookConfig
from runbook.errors import UsageError
from runbook.state.models import CheckResult
from runbook.state.store import Store, as_utc
from runbook.workspace import Workspace

JSON_SCHEMA_VERSION = 1
# Skip reasons that say a run chose not to redo a date, not why it could not be built.
SELECTION_SKIPS = (None, "already_done", "not_a_gap", "not_stale")


def iso_time(value: dt.datetime | str | None) -> str | None:
    """ISO 8601 UTC with a Z, from a datetime or a time as SQLite stores it."""
    moment = as_utc(value)
    return moment.isoformat().replace("+00:00", "Z") if moment else None


class TaskState(NamedTuple):
    """The columns of a task that say what state its dates are in (Store.latest_by_date)."""

    id: int
    run_id: int
    date: str
    end_date: str
    status: str
    skip_reason: str | None
    code_version: str | None
    attempt: int
    exit_code: int | None
    rows_affected: int | None
    finished_at: Any  # a UTC datetime, or SQLite's text for one (iso_time reads both)


@dataclass
class DayState:
    """The newest tasks of one processor covering one date, by what happened to them."""

    built: TaskState | None = None  # newest succeeded task
    attempt: TaskState | None = None  # newest succeeded, failed or blocked task
    skipped: TaskState | None = None  # newest skipped task

    @property
    def last_attempt(self) -> str | None:
        return self.attempt.status if self.attempt is not None else None


def day_states(
    store: Store, processor: str, start: dt.date, end: dt.date, *, lookback_days: int = 0
) -> dict[str, DayState]:
    """For each ISO date of [start, end] that any task touched, its :class:`DayState`.

    ``lookback_days`` widens the search backwards so that a chunk (``batch_days``) starting
    before ``start`` still counts for the dates it covers.
    """
    first = (start - dt.timedelta(days=lookback_days)).isoformat()
    low, high = start.isoformat(), end.isoformat()
    states: dict[str, DayState] = {}
    for row in map(TaskState._make, store.latest_by_date(processor, first, high)):
        if row.date == row.end_date:
            if row.date < low:
                continue
            days: Iterable[str] = (row.date,)
        else:
            span_start = max(dt.date.fromisoformat(row.date), start)
            span_end = min(dt.date.fromisoformat(row.end_date), end)
            days = [day.isoformat() for day in date_range(span_start, span_end)]
        status = row.status
        for day in days:
            state = states.get(day)
            if state is None:
                state = states[day] = DayState()
            if status == "succeeded":
                state.built = _newer(state.built, row)
            if status == "skipped":
                state.skipped = _newer(state.skipped, row)
            else:
                state.attempt = _newer(state.attempt, row)
    return states


def _newer(current: TaskState | None, row: TaskState) -> TaskState:
    return row if current is None or row.id > current.id else current


def ranges(days: Sequence[str], selected: set[str]) -> list[dict[str, Any]]:
    """Runs of consecutive ``days`` (the calendar's expected dates, in order) that are selected."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for day in days:
        if day in selected:
            if current is None:
                current = {"start": day, "end": day, "dates": 0}
                found.append(current)
            current["end"] = day
            current["dates"] += 1
        else:
            current = None
    return found


@dataclass
class ProcessorCoverage:
    """One processor over a range: the calendar's verdict and the store's, per date."""

    name: str
    start: dt.date
    end: dt.date
    version: str | None  # None when it could not be resolved: no date counts as stale
    calendar_dates: list[tuple[str, str | None]]  # (ISO date, calendar skip reason or None)
    states: dict[str, DayState]

    @functools.cached_property
    def expected(self) -> list[str]:
        return [day for day, reason in self.calendar_dates if reason is None]

    @functools.cached_property
    def _classes(self) -> dict[str, Any]:
        """Expected dates by class (built, stale, gaps, newest attempt failed or blocked), and the
        rows affected by the newest build of each (a chunk counted once)."""
        built: set[str] = set()
        stale: set[str] = set()
        gaps: set[str] = set()
        attempts: dict[str, set[str]] = {"failed": set(), "blocked": set()}
        rows: dict[int, int] = {}
        for day in self.expected:
            state = self.states.get(day)
            if state is None:
                gaps.add(day)
                continue
            build = state.built
            if build is None:
                gaps.add(day)
            else:
                built.add(day)
                if self.version is not None and build.code_version != self.version:
                    stale.add(day)
                if build.rows_affected is not None:
                    rows[build.id] = build.rows_affected
            if state.attempt is not None and state.attempt.status in attempts:
                attempts[state.attempt.status].add(day)
        return {
            "built": built,
            "stale": stale,
            "gaps": gaps,
            **attempts,
            "rows": sum(rows.values()) if rows else None,
        }

    def built(self) -> set[str]:
        return self._classes["built"]

    def stale(self) -> set[str]:
        return self._classes["stale"]

    def gaps(self) -> set[str]:
        return self._classes["gaps"]

    def with_last_attempt(self, status: str) -> set[str]:
        """Expected dates whose newest attempt ``failed`` or was ``blocked``."""
        return self._classes[status]

    def attempts(self, status: str) -> list[TaskState]:
        """The tasks behind :meth:`with_last_attempt` (a chunk once), by date."""
        found: dict[int, TaskState] = {}
        for day in sorted(self.with_last_attempt(status)):
            row = self.states[day].attempt
            if row is not None:
                found.setdefault(row.id, row)
        return list(found.values())

    def calendar_skips(self) -> Counter[str]:
        return Counter(reason for _, reason in self.calendar_dates if reason is not None)

    def gap_reasons(self) -> Counter[str]:
        """Why runs skipped expected dates never built (upstream_missing, ...)."""
        found: Counter[str] = Counter()
        for day in self.gaps():
            state = self.states.get(day)
            reason = _gap_reason(state) if state is not None else None
            if reason is not None:
                found[reason] += 1
        return found

    def rows_affected(self) -> int | None:
        """Rows affected by the newest build of each expected date (a chunk counted once)."""
        return self._classes["rows"]


def processor_coverage(
    store: Store,
    config: RunbookConfig,
    calendar: Calendar,
    name: str,
    start: dt.date,
    end: dt.date,
    version: str | None,
    *,
    calendar_dates: list[tuple[str, str | None]] | None = None,
) -> ProcessorCoverage:
    """Read one processor's coverage of [start, end] from the store and the calendar
    (``calendar_dates``: the calendar's verdicts for the processor, when already known)."""
    lookback = max(proc.batch_days for proc in config.processors.values()) - 1
    states = day_states(store, name, start, end, lookback_days=lookback)
    if calendar_dates is None:
        bootstrap = config.bootstrap_days(name)
        calendar_dates = [(day.isoformat(), reason) for day, reason in calendar.dates(start, end, bootstrap)]
    return ProcessorCoverage(name, start, end, version, calendar_dates, states)


def coverage_range(
    config: RunbookConfig, store: Store, start: dt.date | None, end: dt.date | None
) -> tuple[dt.date, dt.date]:
    """The range to report on: as given, else the calendar's, else the span of all runs."""
    first, last = store.run_date_span() if start is None or end is None else (None, None)
    start = start or config.calendar.start or (dt.date.fromisoformat(first) if first else None)
    end = end or config.calendar.end or (dt.date.fromisoformat(last) if last else None)
    if start is None or end is None:
        raise UsageError("no date range: pass --start and --end (or set calendar.start/end in runbook.yaml)")
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    return start, end


def latest_checks_per_day(results: Sequence[CheckResult], days: Sequence[str]) -> list[list[CheckResult]]:
    """For each of ``days`` (consecutive ISO dates), the newest result of each check covering it."""
    index = {day: position for position, day in enumerate(days)}
    per_day: list[list[CheckResult]] = [[] for _ in days]
    by_check: dict[str, list[CheckResult]] = {}
    for result in results:
        by_check.setdefault(result.check_name, []).append(result)
    for name in sorted(by_check):
        # Newest first, each result claims the days no newer result of its check claimed: a
        # "next unclaimed day" pointer keeps this linear in days plus results.
        following = list(range(len(days) + 1))

        def unclaimed(position: int, following: list[int] = following) -> int:
            while following[position] != position:
                following[position] = following[following[position]]
                position = following[position]
            return position

        for result in sorted(by_check[name], key=lambda r: r.id or 0, reverse=True):
            low = index.get(max(result.start_date, days[0])) if days else None
            high = index.get(min(result.end_date, days[-1])) if days else None
            if low is None or high is None:
                continue
            position = unclaimed(low)
            while position <= high:
                per_day[position].append(result)
                following[position] = position + 1
                position = unclaimed(position + 1)
    return per_day


def coverage_view(coverage: ProcessorCoverage, checks: Sequence[CheckResult]) -> dict[str, Any]:
    """The data behind ``runbook coverage`` (docs/json.md): per date, then gaps and stale ranges."""
    expected = coverage.expected
    built, stale, gaps = coverage.built(), coverage.stale(), coverage.gaps()
    days = [day for day, _ in coverage.calendar_dates]
    per_day_checks = latest_checks_per_day(checks, days)
    dates = []
    for (day, calendar_skip), day_checks in zip(coverage.calendar_dates, per_day_checks, strict=True):
        state = coverage.states.get(day) or DayState()
        build = state.built
        dates.append(
            {
                "date": day,
                "expected": calendar_skip is None,
                "calendar_skip": calendar_skip,
                "built": build is not None,
                "stale": day in stale,
                "run_id": build.run_id if build is not None else None,
                "built_at": iso_time(build.finished_at) if build is not None else None,
                "code_version": build.code_version if build is not None else None,
                "rows_affected": build.rows_affected if build is not None else None,
                "last_attempt": state.last_attempt,
                "skip_reason": _gap_reason(state) if build is None else None,
                "checks": [
                    {"check": r.check_name, "passed": r.passed, "run_id": r.run_id, "at": iso_time(r.at)}
                    for r in day_checks
                ],
            }
        )
    stale_ranges = ranges(expected, stale)
    for found in stale_ranges:
        builds = [
            coverage.states[d].built for d in expected if found["start"] <= d <= found["end"] and d in stale
        ]
        found["code_versions"] = sorted({str(row.code_version) for row in builds if row is not None})
    name, span = coverage.name, f"--start {coverage.start} --end {coverage.end}"
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "processor": name,
        "start": coverage.start.isoformat(),
        "end": coverage.end.isoformat(),
        "code_version": coverage.version,
        "summary": {
            "calendar_dates": len(days),
            "expected": len(expected),
            "built": len(built),
            "current": len(built) - len(stale),
            "stale": len(stale),
            "gaps": len(gaps),
            "failed": len(coverage.with_last_attempt("failed")),
            "coverage_pct": percent(len(built), len(expected)),
            "calendar_skips": dict(sorted(coverage.calendar_skips().items())),
            "gap_reasons": dict(sorted(coverage.gap_reasons().items())),
        },
        "gaps": ranges(expected, gaps),
        "stale": stale_ranges,
        "failing_checks": _failing_check_ranges(days, per_day_checks),
        "commands": {
            "fill_gaps": f"runbook run {name} --only-gaps {span}" if gaps else None,
            "rebuild_stale": f"runbook run {name} --only-stale {span}" if stale else None,
        },
        "dates": dates,
    }


def _gap_reason(state: DayState) -> str | None:
    """Why a run skipped a date never built (not the planner's "not selected again" reasons)."""
    reason = state.skipped.skip_reason if state.skipped is not None else None
    return None if reason in SELECTION_SKIPS else reason


def _failing_check_ranges(
    days: Sequence[str], per_day: Sequence[Sequence[CheckResult]]
) -> list[dict[str, Any]]:
    failing: dict[str, set[str]] = {}
    for day, results in zip(days, per_day, strict=True):
        for result in results:
            if not result.passed:
                failing.setdefault(result.check_name, set()).add(day)
    return [{"check": name, **found} for name in sorted(failing) for found in ranges(days, failing[name])]


def percent(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, rounded down to one decimal (99.96 % is not 100.0 %)."""
    if whole <= 0:
        return None
    return int(part * 1000 // whole) / 10


def coverage_report(
    workspace: Workspace,
    store: Store,
    processor: str,
    start: dt.date | None,
    end: dt.date | None,
    calendar_for: Callable[[dt.date, dt.date], Calendar],
) -> dict[str, Any]:
    """``runbook coverage PROCESSOR``: the coverage view of the processor, secrets redacted."""
    from runbook.handoff.context import redact_tree
    from runbook.planner import resolve_versions
    from runbook.redact import Redactor

    config = workspace.config
    start, end = coverage_range(config, store, start, end)
    version = resolve_versions(config, [processor], str(workspace.root))[processor]
    found = processor_coverage(store, config, calendar_for(start, end), processor, start, end, version)
    checks = store.check_results_overlapping(processor, start.isoformat(), end.isoformat())
    return redact_tree(coverage_view(found, checks), Redactor(workspace.secret_values()))
