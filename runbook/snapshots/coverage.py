"""What was ever built: per processor and calendar date, by which run, when, with which code.

A date is *built* when a task of the processor covering it succeeded; the newest such task says
by which run, when and with which code version. A built date is *stale* when that version is not
the processor's current one; an expected date (runnable in the calendar) never built is a *gap*.
``runbook coverage`` shows this per date and as ranges; ``runbook run --only-gaps`` /
``--only-stale`` fill exactly those dates; the handoff's status tables are :class:`ProcessorState`
built from the same :class:`ProcessorCoverage`.

Everything is read with :meth:`Queries.latest_by_date` (a few indexed reads per date), never by
loading every task.
"""

import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from runbook.config import RunbookConfig
from runbook.engine.calendar import Calendar, date_range
from runbook.errors import UsageError
from runbook.formatting import iso_utc, percent
from runbook.kinds import SELECTION_SKIPS, TaskStatus
from runbook.snapshots import collector_paused
from runbook.snapshots.model import (
    CheckRange,
    CoverageSnapshot,
    CoverageSummary,
    DateRange,
    DateState,
    DayCheck,
    StaleRange,
)
from runbook.snapshots.runs import date_ranges
from runbook.state.queries import Queries
from runbook.state.records import CheckResult

_FAILED, _BLOCKED = TaskStatus.FAILED.value, TaskStatus.BLOCKED.value  # plain strings: faster to compare


class TaskState(NamedTuple):
    """What a task says about the state of its dates (from the ``task_latest`` projection: a slot
    fills only the fields it keeps)."""

    id: int
    run_id: int
    date: str
    end_date: str
    status: str
    skip_reason: str | None
    code_version: str | None
    attempt: int | None
    exit_code: int | None
    rows_affected: int | None
    finished_at: Any  # a UTC datetime, or SQLite's text for one (iso_utc reads both)


@dataclass(slots=True)
class DayState:
    """The newest tasks of one processor covering one date, by what happened to them."""

    built: TaskState | None = None  # newest succeeded task
    attempt: TaskState | None = None  # newest succeeded, failed or blocked task
    skipped: TaskState | None = None  # newest skipped task

    def __iter__(self) -> Iterator[TaskState | None]:
        return iter((self.built, self.attempt, self.skipped))

    @property
    def last_attempt(self) -> str | None:
        return self.attempt.status if self.attempt is not None else None


def day_states(
    q: Queries, processor: str, start: dt.date, end: dt.date, *, lookback_days: int = 0
) -> dict[str, DayState]:
    """For each ISO date of [start, end] that any task touched, its :class:`DayState`.

    ``lookback_days`` widens the search backwards so that a chunk (``batch_days``) starting
    before ``start`` still counts for the dates it covers.
    """
    first = (start - dt.timedelta(days=lookback_days)).isoformat()
    return states_from_rows(q.latest_by_date(processor, first, end.isoformat()), start, end)


def states_from_rows(rows: Iterable[Sequence[Any]], start: dt.date, end: dt.date) -> dict[str, DayState]:
    """:func:`day_states` from rows of the ``task_latest`` projection (the date, then its
    :data:`~runbook.state.latest.COLUMNS`), read by the caller."""
    low = start.isoformat()
    states: dict[str, DayState] = {}
    succeeded, skipped = TaskStatus.SUCCEEDED.value, TaskStatus.SKIPPED.value
    new = tuple.__new__  # a TaskState without its Python-level __new__: this runs per date
    for day, b_id, b_run, b_end, b_version, b_rows, b_at, a_id, a_run, a_end, a_status, a_tries, a_exit, s_id, s_run, s_end, reason in rows:  # fmt: skip
        same = a_id is not None and a_id == b_id  # most dates: the newest attempt is the build
        tries, exit_code = (a_tries, a_exit) if same else (None, None)
        built = (
            new(
                TaskState,
                (b_id, b_run, day, b_end, succeeded, None, b_version, tries, exit_code, b_rows, b_at),
            )
            if b_id
            else None
        )
        if same:
            attempt = built
        else:
            attempt = (
                new(TaskState, (a_id, a_run, day, a_end, a_status, None, None, a_tries, a_exit, None, None))
                if a_id
                else None
            )
        # Why a run skipped a date only matters while it is not built (gap_reason); a chunk's skip
        # may still cover other dates, so it is always kept.
        keep_skip = s_id and (b_id is None or (s_end or day) != day)
        skip = (
            new(TaskState, (s_id, s_run, day, s_end, skipped, reason, None, None, None, None, None))
            if keep_skip
            else None
        )
        state = DayState(built, attempt, skip)
        if (b_end or day) == day and (a_end or day) == day and (s_end or day) == day:
            if day >= low:
                states[day] = state
            continue
        for slot, task in zip(("built", "attempt", "skipped"), state, strict=True):
            if task is None:  # chunks (batch_days): each covers every date of its span
                continue
            span_start = max(dt.date.fromisoformat(task.date), start)
            span_end = min(dt.date.fromisoformat(task.end_date), end)
            for covered in date_range(span_start, span_end):
                target = states.setdefault(covered.isoformat(), DayState())
                setattr(target, slot, _newer(getattr(target, slot), task))
    return states


def _newer(current: TaskState | None, row: TaskState) -> TaskState:
    return row if current is None or row.id > current.id else current


@dataclass
class _Classes:
    built: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)
    gaps: set[str] = field(default_factory=set)
    attempts: dict[str, set[str]] = field(
        default_factory=lambda: {TaskStatus.FAILED: set(), TaskStatus.BLOCKED: set()}
    )
    rows: int | None = None


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
    def _classes(self) -> _Classes:
        """Expected dates by class (built, stale, gaps, newest attempt failed or blocked), and the
        rows affected by the newest build of each (a chunk counted once)."""
        found = _Classes()
        rows: dict[int, int] = {}
        states, version = self.states, self.version
        gaps, built, stale = found.gaps.add, found.built.add, found.stale.add
        failed, blocked = found.attempts[TaskStatus.FAILED].add, found.attempts[TaskStatus.BLOCKED].add
        for day in self.expected:
            state = states.get(day)
            if state is None:
                gaps(day)
                continue
            build = state.built
            if build is None:
                gaps(day)
            else:
                built(day)
                if version is not None and build.code_version != version:
                    stale(day)
                if build.rows_affected is not None:
                    rows[build.id] = build.rows_affected
            attempt = state.attempt
            if attempt is not None:
                status = attempt.status
                if status == _FAILED:
                    failed(day)
                elif status == _BLOCKED:
                    blocked(day)
        found.rows = sum(rows.values()) if rows else None
        return found

    def built(self) -> set[str]:
        return self._classes.built

    def stale(self) -> set[str]:
        return self._classes.stale

    def gaps(self) -> set[str]:
        return self._classes.gaps

    def with_last_attempt(self, status: str) -> set[str]:
        """Expected dates whose newest attempt ``failed`` or was ``blocked``."""
        return self._classes.attempts[status]

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
            reason = gap_reason(state) if state is not None else None
            if reason is not None:
                found[reason] += 1
        return found

    def rows_affected(self) -> int | None:
        """Rows affected by the newest build of each expected date (a chunk counted once)."""
        return self._classes.rows

    def ranges(self, dates: Iterable[str]) -> list[DateRange]:
        """Runs of consecutive expected dates among ``dates``."""
        return date_ranges(self.expected, dates)


def gap_reason(state: DayState) -> str | None:
    """Why a run skipped a date never built (not the planner's "not selected again" reasons)."""
    reason = state.skipped.skip_reason if state.skipped is not None else None
    return None if reason in SELECTION_SKIPS else reason


def processor_coverage(
    q: Queries | None,
    config: RunbookConfig,
    calendar: Calendar,
    name: str,
    start: dt.date,
    end: dt.date,
    version: str | None,
) -> ProcessorCoverage:
    """Read one processor's coverage of [start, end] from the store and the calendar."""
    return processor_coverages(q, config, calendar, [name], start, end, {name: version} if version else {})[
        name
    ]


def processor_coverages(
    q: Queries | None,
    config: RunbookConfig,
    calendar: Calendar,
    names: Sequence[str],
    start: dt.date,
    end: dt.date,
    versions: Mapping[str, str],
) -> dict[str, ProcessorCoverage]:
    """The coverage of [start, end] of each of ``names``, read in one statement (``q`` None: a
    workspace without a state store, where nothing is built)."""
    with collector_paused():  # some 50,000 objects for 10 processors over four years
        return _processor_coverages(q, config, calendar, names, start, end, versions)


def _processor_coverages(
    q: Queries | None,
    config: RunbookConfig,
    calendar: Calendar,
    names: Sequence[str],
    start: dt.date,
    end: dt.date,
    versions: Mapping[str, str],
) -> dict[str, ProcessorCoverage]:
    lookback = max(proc.batch_days for proc in config.processors.values()) - 1
    first = (start - dt.timedelta(days=lookback)).isoformat()
    rows = q.latest_by_processor_date(names, first, end.isoformat()) if q is not None else {}
    verdicts: dict[int, list[tuple[str, str | None]]] = {}  # the calendar's, per bootstrap window
    found = {}
    for name in names:
        bootstrap = config.bootstrap_days(name)
        if bootstrap not in verdicts:
            verdicts[bootstrap] = [
                (day.isoformat(), why) for day, why in calendar.dates(start, end, bootstrap)
            ]
        states = states_from_rows(rows.get(name, []), start, end)
        found[name] = ProcessorCoverage(name, start, end, versions.get(name), verdicts[bootstrap], states)
    return found


def coverage_range(
    config: RunbookConfig, q: Queries | None, start: dt.date | None, end: dt.date | None
) -> tuple[dt.date, dt.date]:
    """The range to report on: as given, else the calendar's, else the span of all runs."""
    first, last = q.run_date_span() if q is not None and (start is None or end is None) else (None, None)
    start = start or config.calendar.start or (dt.date.fromisoformat(first) if first else None)
    end = end or config.calendar.end or (dt.date.fromisoformat(last) if last else None)
    if start is None or end is None:
        raise UsageError("no date range: pass --start and --end (or set calendar.start/end in runbook.yaml)")
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    return start, end


def passed_on(result: CheckResult, day: str) -> bool:
    """Whether ``result`` passed for ``day``: a per-date result failed only on its failed dates."""
    if result.passed:
        return True
    if result.per_date and not result.error:
        return not any(r.get("start", "") <= day <= r.get("end", "") for r in result.failed_dates or [])
    return False


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

        for result in sorted(by_check[name], key=lambda r: r.id, reverse=True):
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


# -- snapshots (their types are in runbook.snapshots.model) ---------------------------------------


def date_state(
    coverage: ProcessorCoverage,
    day: str,
    calendar_skip: str | None,
    checks: Sequence[CheckResult],
    stale: bool,
    stamps: Mapping[int, str | None] | None = None,
) -> DateState:
    """One date of ``coverage`` as ``runbook coverage --dates`` lists it (``checks``: the newest
    result of each check covering it; ``stamps``: their times as ISO strings by id, when the
    caller has them)."""
    state = coverage.states.get(day) or DayState()
    build = state.built
    return DateState(
        date=day,
        expected=calendar_skip is None,
        calendar_skip=calendar_skip,
        built=build is not None,
        stale=stale,
        run_id=build.run_id if build is not None else None,
        built_at=iso_utc(build.finished_at) if build is not None else None,
        code_version=build.code_version if build is not None else None,
        rows_affected=build.rows_affected if build is not None else None,
        last_attempt=state.last_attempt,
        skip_reason=gap_reason(state) if build is None else None,
        checks=[
            DayCheck(
                check=r.check_name,
                passed=passed_on(r, day),
                run_id=r.run_id,
                at=stamps[r.id] if stamps is not None and r.id in stamps else iso_utc(r.at),
            )
            for r in checks
        ],
    )


def coverage_snapshot(coverage: ProcessorCoverage, checks: Sequence[CheckResult]) -> CoverageSnapshot:
    """The data behind ``runbook coverage`` (docs/json.md): per date, then gaps and stale ranges."""
    expected = coverage.expected
    built, stale, gaps = coverage.built(), coverage.stale(), coverage.gaps()
    days = [day for day, _ in coverage.calendar_dates]
    per_day_checks = latest_checks_per_day(checks, days)
    stamps = {r.id: iso_utc(r.at) for r in checks}  # once per result, not once per date it covers
    dates = [
        date_state(coverage, day, calendar_skip, day_checks, day in stale, stamps)
        for (day, calendar_skip), day_checks in zip(coverage.calendar_dates, per_day_checks, strict=True)
    ]
    stale_ranges = []
    for found in coverage.ranges(stale):
        builds = [coverage.states[d].built for d in expected if found.start <= d <= found.end and d in stale]
        versions = sorted({str(row.code_version) for row in builds if row is not None})
        stale_ranges.append(
            StaleRange(start=found.start, end=found.end, dates=found.dates, code_versions=versions)
        )
    name, span = coverage.name, f"--start {coverage.start} --end {coverage.end}"
    return CoverageSnapshot(
        processor=name,
        start=coverage.start.isoformat(),
        end=coverage.end.isoformat(),
        code_version=coverage.version,
        summary=CoverageSummary(
            calendar_dates=len(days),
            expected=len(expected),
            built=len(built),
            current=len(built) - len(stale),
            stale=len(stale),
            gaps=len(gaps),
            failed=len(coverage.with_last_attempt(TaskStatus.FAILED)),
            blocked=len(coverage.with_last_attempt(TaskStatus.BLOCKED)),
            percent=percent(len(built), len(expected)),
            calendar_skips=dict(sorted(coverage.calendar_skips().items())),
            gap_reasons=dict(sorted(coverage.gap_reasons().items())),
        ),
        gaps=coverage.ranges(gaps),
        stale=stale_ranges,
        failing_checks=_failing_check_ranges(days, per_day_checks),
        commands={
            "fill_gaps": f"runbook run {name} --only-gaps {span}" if gaps else None,
            "rebuild_stale": f"runbook run {name} --only-stale {span}" if stale else None,
        },
        dates=dates,
    )


def _failing_check_ranges(days: Sequence[str], per_day: Sequence[Sequence[CheckResult]]) -> list[CheckRange]:
    failing: dict[str, set[str]] = {}
    for day, results in zip(days, per_day, strict=True):
        for result in results:
            if not passed_on(result, day):
                failing.setdefault(result.check_name, set()).add(day)
    return [
        CheckRange(check=name, start=r.start, end=r.end, dates=r.dates)
        for name in sorted(failing)
        for r in date_ranges(days, failing[name])
    ]
