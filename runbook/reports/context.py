"""The handoff report as data: one dict assembled from the read model's snapshots, rendered by the
templates and printed as is by ``runbook handoff --format json`` (docs/json-handoff.md).

The report covers a *scope*: a work session (the open one by default) plus the runs and notes
made outside any session since the previous session ended, so work done between sessions shows
up in the next handoff. Running and interrupted runs are shown whatever their session, and the
status tables describe the whole workspace. Every string in the result has passed through the
workspace's :class:`~runbook.redact.Redactor`.

Runs are the same :class:`~runbook.snapshots.model.RunSnapshot` that ``runbook status --json``
prints; checks, failures, events and notes are the snapshots ``show`` and ``validate`` print.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from runbook.config import RunbookConfig
from runbook.engine.liveness import liveness, this_host
from runbook.errors import UsageError
from runbook.formatting import error_line, iso_utc
from runbook.kinds import ACTIVE_RUN_STATUSES, RunStatus, Severity, TaskStatus
from runbook.redact import Redactor, redact_tree
from runbook.reports import phases, sections
from runbook.reports.actions import engine
from runbook.reports.actions.model import ExtentFact, Facts
from runbook.reports.actions.overall import overall_status
from runbook.snapshots import JSON_SCHEMA_VERSION, collector_paused, to_data
from runbook.snapshots.checks import check_snapshot
from runbook.snapshots.coverage import ProcessorCoverage, coverage_range
from runbook.snapshots.heatmap import heat_map, live_states
from runbook.snapshots.model import CheckSnapshot, FailureGroup, NoteSnapshot, PoolSnapshot, RunSnapshot
from runbook.snapshots.processors import CalendarFor, ProcessorState, processor_state, workspace_coverages
from runbook.snapshots.runs import (
    Liveness,
    blocked_groups,
    event_snapshot,
    expand_days,
    failure_groups,
    live_runs,
    run_snapshots,
)
from runbook.snapshots.sessions import note_groups, session_snapshot
from runbook.state.connect import redact_url
from runbook.state.queries import Queries
from runbook.state.records import CheckResult, Task, WorkSession
from runbook.workspace import Workspace

MAX_RUNS = 30  # runs of the scope shown (newest); the report says how many there were
MAX_FAILURE_GROUPS = 20
MAX_EVENTS = 60
# Per-date noise: failures are listed apart, and the Validation section sums up per-date checks.
QUIET_EVENT_KINDS = ("task_retry", "task_skipped", "check_window_passed")


@dataclass(frozen=True)
class Scope:
    """What the report is about: a session (or none) and the window for work outside sessions."""

    session: WorkSession | None
    since: dt.datetime | None
    until: dt.datetime


def resolve_scope(q: Queries | None, now: dt.datetime, session_id: int | None = None) -> Scope:
    """The given session, else the open one, else the work since the last session ended."""
    if q is None:
        if session_id is not None:
            raise UsageError(
                f"session {session_id} not found (none was started yet; see `runbook session start`)"
            )
        return Scope(None, None, now)
    if session_id is not None:
        session = q.get_session(session_id)
        if session is None:
            latest = q.latest_session()
            known = f"the latest is {latest.id}" if latest else "none was started yet"
            raise UsageError(f"session {session_id} not found ({known}; see `runbook session start`)")
    else:
        session = q.open_session()
    if session is None:
        return Scope(None, q.previous_session_end(), now)
    return Scope(session, q.previous_session_end(before_id=session.id), session.ended_at or now)


def build_context(
    workspace: Workspace,
    q: Queries | None,
    *,
    now: dt.datetime,
    timezone: str,
    scope: Scope | None = None,
    alive: Liveness = liveness,
    calendar_for: CalendarFor | None = None,
    versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the handoff report shows, as JSON-ready data with secrets redacted."""
    with collector_paused():
        return _build_context(
            workspace, q, now=now, timezone=timezone, scope=scope, alive=alive,
            calendar_for=calendar_for, versions=versions,
        )  # fmt: skip


def _build_context(
    workspace: Workspace,
    q: Queries | None,
    *,
    now: dt.datetime,
    timezone: str,
    scope: Scope | None,
    alive: Liveness,
    calendar_for: CalendarFor | None,
    versions: dict[str, str] | None,
) -> dict[str, Any]:
    config = workspace.config
    scope = scope or (resolve_scope(q, now) if q is not None else Scope(None, None, now))
    session = scope.session
    scoped, total_runs = (
        q.scoped_runs(session.id if session else None, scope.since, scope.until, limit=MAX_RUNS)
        if q
        else ([], 0)
    )
    every = {run.id: run for run in [*scoped, *(live_runs(q) if q else [])]}
    # One read of the runs' tasks serves the run snapshots and the Gantt and performance sections.
    stats = q.run_processor_stats(sorted(every)) if q else []
    snapshots = {
        s.id: s
        for s in (
            run_snapshots(
                q,
                sorted(every.values(), key=lambda r: r.id),
                now=now,
                alive=alive,
                outcomes=q.outcomes_of(stats, sorted(every)),
                costs=True,
            )  # fmt: skip
            if q
            else []
        )
    }
    running = [s for s in snapshots.values() if s.status in ACTIVE_RUN_STATUSES]
    interrupted = [s for s in snapshots.values() if s.status == RunStatus.INTERRUPTED]
    busy: dict[str, set[str]] = {"running": set(), "interrupted": set()}
    for kind, group in (("running", running), ("interrupted", interrupted)):
        for snapshot in group:
            busy[kind].update(p.name for p in snapshot.per_processor if p.progress.remaining)

    span, warnings, coverages = _coverages(workspace, q, calendar_for, versions)
    descriptions = {
        (name, c.name): c.description for name, proc in config.processors.items() for c in proc.checks
    }
    checks = [check_snapshot(result, descriptions, config.warehouse.kind) for result in _latest_checks(q)]
    checks.sort(key=lambda c: (c.passed, c.severity != Severity.BLOCK, _rank(config, c.processor), c.check))
    failing_gates = {c.processor for c in checks if not c.passed and c.severity == Severity.BLOCK}
    states = [
        processor_state(
            name, config, coverages.get(name), running=busy["running"],
            interrupted=busy["interrupted"] - busy["running"], failing_gates=failing_gates,
        )
        for name in config.processors
    ]  # fmt: skip
    heatmap = None
    if span is not None:
        live = q.live_task_dates([s.id for s in running], *(day.isoformat() for day in span)) if q else []
        heatmap = heat_map(config, coverages, *span, live=live_states(live, *span), warnings=warnings)
    failures, failed_dates = _failures(q, config.processors, coverages)
    blocked = _blocked(q, coverages)

    scoped_ids = sorted(run.id for run in scoped)
    events, total_events = (
        q.timeline(scoped_ids, scope.since, scope.until, exclude_kinds=QUIET_EVENT_KINDS, limit=MAX_EVENTS)
        if q
        else ([], 0)
    )
    in_scope = set(scoped_ids)
    windows = sections.processor_windows([row for row in stats if row["run_id"] in in_scope])
    scoped_runs = [snapshots[run_id] for run_id in scoped_ids]
    notes = note_groups(
        q.scoped_notes(session.id if session else None, scope.since, scope.until) if q else []
    )
    overall = overall_status(
        states, running, interrupted, checks, any_runs=bool(snapshots) or any(s.built for s in states)
    )
    facts = _facts(q, states, running, interrupted, checks, coverages, notes, failures, now=now, alive=alive)
    next_actions = engine.next_actions(facts)
    context = {
        "schema_version": JSON_SCHEMA_VERSION,
        "generated_at": iso_utc(now),
        "timezone": timezone,
        "workspace": _workspace_info(workspace),
        "session": session_snapshot(session) if session else None,
        "scope": {
            "since": iso_utc(scope.since),
            "until": iso_utc(scope.until),
            "runs_shown": len(scoped_ids),
            "runs_total": total_runs,
        },
        "overall": overall,
        "range": {"start": span[0].isoformat(), "end": span[1].isoformat()} if span else None,
        "warnings": warnings,
        "quick": {
            "completed": [
                {"processor": s.name, "built": s.built, "expected": s.expected}
                for s in states
                if s.status == "complete"
            ],
            "succeeded_runs": [
                {"id": s.id, "processors": s.processors}
                for s in scoped_runs
                if s.status == RunStatus.SUCCEEDED
            ],
            "next": next_actions[:3],
        },
        "phases": phases.phase_tables(states),
        "heatmap": heatmap,
        "heatmap_image": None,
        "runs": scoped_runs,
        "running": running,
        "interrupted": interrupted,
        "resumable": facts.resumable,
        "checks": checks,
        "failures": {
            "groups": failures[:MAX_FAILURE_GROUPS],
            "total_groups": len(failures),
            "dates": failed_dates,
        },
        "blocked": blocked,
        "timeline": {"events": [event_snapshot(e) for e in events], "omitted": total_events - len(events)},
        "gantt": sections.gantt_entries(windows, {s.id: s for s in scoped_runs}, now),
        "performance": sections.performance_entries(windows, {s.id: s for s in scoped_runs}, config),
        "pools": _pools(q, config),
        "notes": notes,
        "next_actions": next_actions,
    }
    context["heatmap"] = None  # dates, states and names: nothing to mask in it but its warnings
    redacted: dict[str, Any] = redact_tree(to_data(context), Redactor(workspace.secret_values()))
    if heatmap is not None:
        redacted["heatmap"] = to_data(heatmap._replace(warnings=redacted["warnings"]))
    return redacted


def _facts(
    q: Queries | None,
    states: list[ProcessorState],
    running: list[RunSnapshot],
    interrupted: list[RunSnapshot],
    checks: list[CheckSnapshot],
    coverages: dict[str, ProcessorCoverage],
    notes: dict[str, list[NoteSnapshot]],
    failures: list[FailureGroup],
    *,
    now: dt.datetime,
    alive: Liveness,
) -> Facts:
    """What the next-action engine reads, from the snapshots and the coverage of every processor."""
    live = {run.id for run in [*running, *interrupted]}
    held: set[int] = set()
    failed_rows: list[tuple[str, Any]] = []
    for name, coverage in coverages.items():
        for status in (TaskStatus.FAILED, TaskStatus.BLOCKED):
            for row in coverage.attempts(status):
                held.add(row.run_id)
                if status == TaskStatus.FAILED:
                    failed_rows.append((name, row))
    resumable: list[RunSnapshot] = []
    if q is not None and held - live:
        found = [
            run
            for run in q.runs_by_id(sorted(held - live))
            if run.status in (RunStatus.FAILED, RunStatus.BLOCKED)
        ]
        resumable = [
            s
            for s in run_snapshots(q, found, now=now, alive=alive)
            if s.status in (RunStatus.FAILED, RunStatus.BLOCKED)
        ]
    open_dates: dict[int, dict[str, set[str]]] = {}
    ids = [run.id for run in [*running, *interrupted, *resumable]]
    for run_id, processor, date, end_date, _ in q.open_task_dates(ids) if q is not None else []:
        open_dates.setdefault(run_id, {}).setdefault(processor, set()).update(expand_days(date, end_date))
    attempt_errors: dict[tuple[str, str], list[list[str]]] = {}
    if q is not None and failed_rows:
        tails = q.task_errors([row.id for _, row in failed_rows])
        seen = q.attempt_errors(sorted({row.run_id for _, row in failed_rows}))
        for name, row in failed_rows:
            key = (name, error_line(tails.get(row.id)))
            attempt_errors.setdefault(key, []).append(seen.get((row.run_id, name, row.date), []))
    # A run a daily quota interrupted goes on once the quota resets: a pause, not an interruption.
    moment = iso_utc(now) or ""
    paused = [
        (run, run.resume_after) for run in interrupted if run.resume_after and run.resume_after > moment
    ]
    waiting = {run.id for run, _ in paused}
    return Facts(
        processors=states,
        running=running,
        interrupted=[run for run in interrupted if run.id not in waiting],
        paused=paused,
        resumable=resumable,
        open_dates=open_dates,
        checks=checks,
        failures=failures,
        attempt_errors=attempt_errors,
        gaps={name: set(c.gaps()) for name, c in coverages.items()},
        stale={name: set(c.stale()) for name, c in coverages.items()},
        expected={name: c.expected for name, c in coverages.items()},
        notes=notes,
        host=this_host(),
        extent=_extent(q, list(coverages)),
        failed_check_dates=_failed_check_dates(checks),
    )


def _failed_check_dates(checks: list[CheckSnapshot]) -> dict[tuple[str, str], set[str]]:
    """Per processor and per-date check, the dates its newest verdicts failed."""
    found: dict[tuple[str, str], set[str]] = {}
    for check in checks:
        if check.passed or not check.per_date:
            continue
        days = found.setdefault((check.processor, check.check), set())
        for entry in check.failed_dates:
            start, end = entry.get("start"), entry.get("end") or entry.get("start")
            if start:
                days.update(expand_days(str(start), str(end)))
    return {key: days for key, days in found.items() if days}


def _extent(q: Queries | None, names: list[str]) -> list[ExtentFact]:
    """The extent warnings of the newest run of each processor (its source beyond that run's range)."""
    if q is None or not names:
        return []
    newest: dict[str, int] = {}
    for run in q.list_runs(limit=50):
        for name in run.processors:
            newest.setdefault(name, run.id)
    found = []
    for event in q.events_of_kind(sorted(set(newest.values())), "extent_warning"):
        if event.processor is None or event.run_id is None or newest.get(event.processor) != event.run_id:
            continue
        start, end = event.data.get("start"), event.data.get("end")
        if start and end:
            found.append(ExtentFact(event.processor, event.run_id, str(start), str(end), event.message))
    return found


def _rank(config: Any, processor: str) -> int:
    order = list(config.processors)
    return order.index(processor) if processor in order else 1 << 30


def _pools(q: Queries | None, config: RunbookConfig) -> list[PoolSnapshot]:
    """The configured pools with the slots they have now (fewer while the warehouse throttles)."""
    stored = q.pool_sizes() if q is not None else {}
    return [
        PoolSnapshot(name, size, stored[name][1] if name in stored and stored[name][0] == size else size)
        for name, size in sorted(config.pools.items())
    ]


def _coverages(
    workspace: Workspace, q: Queries | None, calendar_for: CalendarFor | None, versions: dict[str, str] | None
) -> tuple[tuple[dt.date, dt.date] | None, list[str], dict[str, ProcessorCoverage]]:
    """(the range reported on, what could not be read, coverage per processor)."""
    try:
        span = coverage_range(workspace.config, q, None, None)
    except UsageError:
        return None, [], {}
    warnings, coverages = workspace_coverages(
        workspace, q, span, calendar_for=calendar_for, versions=versions
    )
    return span, warnings, coverages


def _as_task(processor: str, row: Any) -> Task:
    return Task(
        id=row.id, run_id=row.run_id, processor=processor, date=row.date, end_date=row.end_date,
        status=row.status, attempt=row.attempt, exit_code=row.exit_code,
    )  # fmt: skip


def _failures(
    q: Queries | None, order: Any, coverages: dict[str, ProcessorCoverage]
) -> tuple[list[Any], int]:
    """Dates whose newest attempt failed, grouped by processor and error; and how many dates."""
    rows = [
        _as_task(name, row)
        for name in order
        if name in coverages
        for row in coverages[name].attempts(TaskStatus.FAILED)
    ]
    if not rows or q is None:
        return [], 0
    errors = q.task_errors([task.id for task in rows])
    sequences = {name: coverage.expected for name, coverage in coverages.items()}
    dates = sum(len(coverage.with_last_attempt(TaskStatus.FAILED)) for coverage in coverages.values())
    return failure_groups(rows, sequences, errors=errors), dates


def _blocked(q: Queries | None, coverages: dict[str, ProcessorCoverage]) -> list[Any]:
    """Dates whose newest attempt was blocked, grouped by processor and reason."""
    rows = [
        _as_task(name, row)
        for name, coverage in coverages.items()
        for row in coverage.attempts(TaskStatus.BLOCKED)
    ]
    if not rows or q is None:
        return []
    errors = q.task_errors([task.id for task in rows])
    for task in rows:
        task.error_tail = errors.get(task.id)
    return blocked_groups(rows, {name: coverage.expected for name, coverage in coverages.items()})


def _workspace_info(workspace: Workspace) -> dict[str, Any]:
    url = workspace.database_url
    if url.startswith("sqlite:///"):
        from pathlib import Path

        path = Path(url.removeprefix("sqlite:///"))
        if path.is_absolute() and path.is_relative_to(workspace.root):
            url = f"sqlite:///{path.relative_to(workspace.root)}"
    return {"name": workspace.config.name, "config": workspace.config_path.name, "database": redact_url(url)}


def _latest_checks(q: Queries | None) -> list[CheckResult]:
    """The newest result of every check; a per-date check's newest run merged over its windows."""
    from runbook.snapshots.checks import merge_per_date

    found: list[CheckResult] = []
    for result in q.latest_check_results() if q else []:
        if result.per_date and result.run_id is not None and q is not None:
            same = q.check_results(
                processor=result.processor, check_name=result.check_name, run_id=result.run_id
            )
            found += merge_per_date(same)
        else:
            found.append(result)
    return found
