"""The processor x date heat map, and what one of its cells stands for.

Every processor of the workspace is a row, every calendar date of the range a column, and each
cell says what state that date is in for that processor (:class:`~runbook.kinds.CellState`, or
the reason it was skipped). Rows come in dependency order, grouped by ``phase:``. A row is a list
of *spans*: consecutive dates in the same state, so a heat map of ten processors over two years
is a few hundred spans rather than 7,300 cells. The dashboard's page and the SVG picture beside
each handoff are drawn from this one snapshot.

It is read from the ``task_latest`` projection (one statement for every processor, see
:func:`~runbook.snapshots.coverage.processor_coverages`) plus the running and pending tasks of
the live runs: never cell by cell. :func:`day_detail` is the click on one cell: the date's
attempts in every run, the newest error, the checks that cover it.
"""

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from runbook.config import RunbookConfig
from runbook.engine.calendar import date_range
from runbook.kinds import CALENDAR_SKIPS, SELECTION_SKIPS, CellState, SkipReason, TaskStatus
from runbook.snapshots.coverage import (
    DayState,
    ProcessorCoverage,
    date_state,
    gap_reason,
    latest_checks_per_day,
)
from runbook.snapshots.model import DateState, TaskSnapshot
from runbook.snapshots.runs import task_snapshot
from runbook.state.records import CheckResult, Task

# The legend, in this order: outcomes, live states, then the reasons a date was skipped.
LABELS: dict[str, str] = {
    CellState.SUCCEEDED: "succeeded",
    CellState.STALE: "stale (built by older code)",
    CellState.RUNNING: "running",
    CellState.QUEUED: "queued",
    CellState.FAILED: "failed",
    CellState.BLOCKED: "blocked",
    CellState.NEVER_BUILT: "never built",
    **{reason: f"skipped: {reason.replace('_', ' ')}" for reason in SkipReason},
}
_ATTEMPT_SHOWN = (TaskStatus.FAILED.value, TaskStatus.BLOCKED.value)
_STALE, _SUCCEEDED, _NEVER_BUILT = (
    CellState.STALE.value,
    CellState.SUCCEEDED.value,
    CellState.NEVER_BUILT.value,
)
_SELECTION_SKIPS = frozenset(reason.value for reason in SELECTION_SKIPS)
MAX_DAYS = 3660  # ten years: the widest range one heat map shows
ATTEMPTS_SHOWN = 50


class HeatSpan(NamedTuple):
    """Consecutive dates of one processor in the same state."""

    state: str
    start: str
    end: str
    dates: int


class HeatRow(NamedTuple):
    processor: str
    phase: str
    needs: list[str]
    version: str | None
    expected: int  # the calendar's runnable dates in the range
    built: int  # of them, built (current or stale)
    counts: dict[str, int]  # dates by state
    spans: list[HeatSpan]


class LegendEntry(NamedTuple):
    state: str
    label: str
    dates: int  # in this state, over every row


class HeatMap(NamedTuple):
    """Processors x dates over [start, end]: rows in dependency order, grouped by phase."""

    start: str
    end: str
    days: int
    legend: list[LegendEntry]
    rows: list[HeatRow]
    warnings: list[str]


def heat_order(config: RunbookConfig) -> list[str]:
    """Processors grouped by phase (phases in the order they first appear), in dependency order."""
    order = config.order()
    phases: dict[str, list[str]] = {}
    for name in order:
        phases.setdefault(config.processors[name].phase, []).append(name)
    return [name for members in phases.values() for name in members]


def live_states(
    tasks: Iterable[tuple[str, str, str, str]], start: dt.date, end: dt.date
) -> dict[tuple[str, str], str]:
    """(processor, ISO date) -> running or queued, from the live runs' running and pending tasks."""
    found: dict[tuple[str, str], str] = {}
    for processor, first, last, status in tasks:
        state = CellState.RUNNING if status == TaskStatus.RUNNING else CellState.QUEUED
        low = max(dt.date.fromisoformat(first), start)
        high = min(dt.date.fromisoformat(last), end)
        for day in date_range(low, high):
            key = (processor, day.isoformat())
            if found.get(key) != CellState.RUNNING:
                found[key] = state
    return found


def cell_state(
    calendar_skip: str | None, state: DayState | None, version: str | None, live: str | None = None
) -> str:
    """The state of one cell, the first that applies: running, queued, failed, blocked (its newest
    attempt), stale or succeeded (built), the calendar's reason to skip it, a run's reason to have
    skipped it, never built."""
    if live is not None:
        return live
    if state is not None:
        if state.attempt is not None and state.attempt.status in (TaskStatus.FAILED, TaskStatus.BLOCKED):
            return state.attempt.status
        if state.built is not None:
            stale = version is not None and state.built.code_version != version
            return CellState.STALE if stale else CellState.SUCCEEDED
    if calendar_skip is not None:
        return calendar_skip
    reason = gap_reason(state) if state is not None else None
    return reason or CellState.NEVER_BUILT


def heat_map(
    config: RunbookConfig,
    coverages: Mapping[str, ProcessorCoverage],
    start: dt.date,
    end: dt.date,
    *,
    live: Mapping[tuple[str, str], str] | None = None,
    warnings: Sequence[str] = (),
) -> HeatMap:
    """The heat map of [start, end] from every processor's coverage and the live tasks."""
    live = live or {}
    rows = []
    totals: dict[str, int] = {}
    for name in heat_order(config):
        coverage = coverages.get(name)
        if coverage is None:
            continue
        spans: list[HeatSpan] = []
        counts: dict[str, int] = {}
        states, version = coverage.states, coverage.version
        current, first, last, length = "", "", "", 0
        expected = built = 0
        for day, calendar_skip in coverage.calendar_dates:
            found = states.get(day)
            # cell_state, inlined with plain strings: this runs for every cell of the map.
            state = live.get((name, day)) if live else None
            if state is None:
                if (
                    found is not None
                    and (attempt := found.attempt) is not None
                    and attempt.status in _ATTEMPT_SHOWN
                ):
                    state = attempt.status
                elif found is not None and (build := found.built) is not None:
                    state = _STALE if version is not None and build.code_version != version else _SUCCEEDED
                elif calendar_skip is not None:
                    state = calendar_skip
                else:
                    reason = (
                        found.skipped.skip_reason if found is not None and found.skipped is not None else None
                    )
                    state = _NEVER_BUILT if reason is None or reason in _SELECTION_SKIPS else reason
            counts[state] = counts.get(state, 0) + 1
            if calendar_skip is None:
                expected += 1
                built += found is not None and found.built is not None
            if state == current:
                last, length = day, length + 1
                continue
            if length:
                spans.append(HeatSpan(current, first, last, length))
            current, first, last, length = state, day, day, 1
        if length:
            spans.append(HeatSpan(current, first, last, length))
        for state, count in counts.items():
            totals[state] = totals.get(state, 0) + count
        proc = config.processors[name]
        rows.append(
            HeatRow(
                processor=name,
                phase=proc.phase,
                needs=list(proc.needs),
                version=coverage.version,
                expected=expected,
                built=built,
                counts=dict(sorted(counts.items(), key=lambda item: _rank(item[0]))),
                spans=spans,
            )
        )
    legend = [LegendEntry(state, LABELS.get(state, state), count) for state, count in totals.items()]
    legend.sort(key=lambda entry: _rank(entry.state))
    return HeatMap(
        start=start.isoformat(),
        end=end.isoformat(),
        days=(end - start).days + 1,
        legend=legend,
        rows=rows,
        warnings=list(warnings),
    )


def _rank(state: str) -> tuple[int, str]:
    keys = list(LABELS)
    return (keys.index(state), "") if state in keys else (len(keys), state)


# -- one cell ----------------------------------------------------------------------------------


class LogExcerpt(NamedTuple):
    """The lines a run's log holds for one processor and date (the newest ones)."""

    run_id: int
    path: str
    lines: list[str]
    omitted: int  # earlier lines of the same task not shown


class DayDetail(NamedTuple):
    """One processor on one date: its state, its coverage, every attempt, the newest error, its log."""

    processor: str
    date: str
    state: str
    label: str
    code_version: str | None  # the processor's current one
    coverage: DateState
    attempts: list[TaskSnapshot]  # the newest first, in any run
    attempts_total: int
    error_tail: str | None  # of the newest failed or blocked attempt
    log: LogExcerpt | None
    commands: dict[str, str]


def day_detail(
    coverage: ProcessorCoverage,
    day: str,
    tasks: Sequence[Task],
    total: int,
    checks: Sequence[CheckResult],
    *,
    live: str | None = None,
    log: LogExcerpt | None = None,
) -> DayDetail:
    """The cell of ``coverage``'s processor on ``day`` (its single date): ``tasks`` are its newest
    attempts in any run (``total`` in all), ``checks`` the results covering it."""
    calendar_skip = dict(coverage.calendar_dates).get(day)
    state = cell_state(calendar_skip, coverage.states.get(day), coverage.version, live)
    (day_checks,) = latest_checks_per_day(checks, [day])
    stale = day in coverage.stale()
    failed = next((t for t in tasks if t.status in (TaskStatus.FAILED, TaskStatus.BLOCKED)), None)
    name = coverage.name
    commands = {"coverage": f"runbook coverage {name} --start {day} --end {day} --dates"}
    if tasks:
        commands["show"] = f"runbook show {tasks[0].run_id}"
    if state not in (CellState.SUCCEEDED, CellState.RUNNING, CellState.QUEUED, *CALENDAR_SKIPS):
        only = " --only-stale" if state == CellState.STALE else ""
        commands["run"] = f"runbook run {name} --start {day} --end {day}{only}"
    return DayDetail(
        processor=name,
        date=day,
        state=state,
        label=LABELS.get(state, state),
        code_version=coverage.version,
        coverage=date_state(coverage, day, calendar_skip, day_checks, stale),
        attempts=[task_snapshot(task) for task in tasks],
        attempts_total=total,
        error_tail=failed.error_tail if failed is not None else None,
        log=log,
        commands=commands,
    )
