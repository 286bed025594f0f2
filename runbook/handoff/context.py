"""The handoff report as data: one dict built from the state store, rendered by the templates and
printed as is by ``runbook handoff --format json`` (docs/json.md).

The report covers a *scope*: a work session (the open one by default) plus the runs and notes
made outside any session since the previous session ended, so work done between sessions shows
up in the next handoff. Running and interrupted runs are shown whatever their session, and the
status tables describe the whole workspace. Every string in the result has passed through the
workspace's :class:`~runbook.redact.Redactor`.

Nothing here loads all tasks: the status tables read a few rows per processor and date
(:func:`runbook.coverage.day_states`), the rest aggregates in SQL over the scope's runs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from runbook.calendar import Calendar
from runbook.coverage import ProcessorCoverage, coverage_range, iso_time, processor_coverage
from runbook.errors import RunbookError, UsageError
from runbook.handoff import actions, phases, sections
from runbook.liveness import controller_alive
from runbook.planner import resolve_versions
from runbook.redact import Redactor
from runbook.state.db import redact_url
from runbook.state.models import ACTIVE_RUN_STATUSES, Run, WorkSession
from runbook.state.store import Store
from runbook.workspace import Workspace

JSON_SCHEMA_VERSION = 1
MAX_RUNS = 30  # runs of the scope shown (newest); the report says how many there were
MAX_FAILURES = 20
MAX_EVENTS = 60
QUIET_EVENT_KINDS = ("task_retry", "task_skipped")  # per-date noise; failures are listed apart

CalendarFor = Callable[[dt.date, dt.date], Calendar]


@dataclass(frozen=True)
class Scope:
    """What the report is about: a session (or none) and the window for work outside sessions."""

    session: WorkSession | None
    since: dt.datetime | None
    until: dt.datetime


def resolve_scope(store: Store, now: dt.datetime, session_id: int | None = None) -> Scope:
    """The given session, else the open one, else the work since the last session ended."""
    if session_id is not None:
        session = store.get_session(session_id)
        if session is None:
            latest = store.latest_session()
            known = f"the latest is {latest.id}" if latest else "none was started yet"
            raise UsageError(f"session {session_id} not found ({known}; see `runbook session start`)")
    else:
        session = store.open_session()
    if session is None:
        return Scope(None, store.previous_session_end(), now)
    return Scope(session, store.previous_session_end(before_id=session.id), session.ended_at or now)


def build_context(
    workspace: Workspace,
    store: Store,
    *,
    now: dt.datetime,
    timezone: str,
    scope: Scope | None = None,
    liveness: sections.Liveness = controller_alive,
    calendar_for: CalendarFor | None = None,
    versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the handoff report shows, as JSON-ready data with secrets redacted."""
    config = workspace.config
    scope = scope or resolve_scope(store, now)
    session = scope.session
    scoped, total_runs = store.scoped_runs(
        session.id if session else None, scope.since, scope.until, limit=MAX_RUNS
    )
    entries, running, interrupted, busy = _run_entries(store, scoped, liveness, now)
    span, warnings, coverages = _coverages(workspace, store, calendar_for, versions)
    checks = sections.check_entries(store.latest_check_results(), config)
    failing_blocking = {c["processor"] for c in checks if not c["passed"] and c["severity"] == "block"}
    processor_entries = [
        phases.processor_entry(
            name,
            config,
            coverages.get(name),
            running=busy["running"],
            interrupted=busy["interrupted"] - busy["running"],
            failing_blocking_checks=failing_blocking,
        )
        for name in config.processors
    ]
    failed_rows = _failed_rows(config.processors, coverages)
    failures = sections.failure_entries(
        failed_rows[:MAX_FAILURES], store.task_errors([row.id for _, row in failed_rows[:MAX_FAILURES]])
    )
    blocked_reasons = _blocked_reasons(store, coverages, checks)

    scoped_ids = sorted(run.id for run in scoped if run.id is not None)
    events, total_events = store.timeline(
        scoped_ids, scope.since, scope.until, exclude_kinds=QUIET_EVENT_KINDS, limit=MAX_EVENTS
    )
    windows = sections.processor_windows(store.run_processor_stats(scoped_ids))
    scoped_entries = {i: entries[i] for i in scoped_ids}
    notes = sections.note_entries(
        store.scoped_notes(session.id if session else None, scope.since, scope.until)
    )
    overall = actions.overall_status(
        processor_entries,
        running,
        interrupted,
        checks,
        any_runs=bool(entries) or any(p["done"] for p in processor_entries),
    )
    next_actions = actions.next_actions(
        processor_entries, running, interrupted, checks, blocked_reasons, notes.get("next", [])
    )
    context = {
        "schema_version": JSON_SCHEMA_VERSION,
        "generated_at": iso_time(now),
        "timezone": timezone,
        "workspace": _workspace_info(workspace),
        "session": _session_info(session),
        "scope": {
            "since": iso_time(scope.since),
            "until": iso_time(scope.until),
            "runs_shown": len(scoped_ids),
            "runs_total": total_runs,
        },
        "overall": overall,
        "range": {"start": span[0].isoformat(), "end": span[1].isoformat()} if span else None,
        "warnings": warnings,
        "quick": {
            "completed": [
                {"processor": p["name"], "done": p["done"], "expected": p["expected"]}
                for p in processor_entries
                if p["status"] == "complete"
            ],
            "succeeded_runs": [
                {"id": e["id"], "processors": e["processors"]}
                for e in scoped_entries.values()
                if e["status"] == "succeeded"
            ],
            "next": next_actions[:3],
        },
        "phases": phases.phase_tables(processor_entries),
        "runs": list(scoped_entries.values()),
        "running": running,
        "interrupted": interrupted,
        "checks": checks,
        "failures": {"shown": failures, "total": len(failed_rows)},
        "timeline": {
            "events": [sections.event_entry(e) for e in events],
            "omitted": total_events - len(events),
        },
        "gantt": sections.gantt_entries(windows, scoped_entries, now),
        "performance": sections.performance_entries(windows, scoped_entries, config),
        "notes": notes,
        "next_actions": next_actions,
    }
    return redact_tree(context, Redactor(workspace.secret_values()))


def _run_entries(
    store: Store, scoped: list[Run], liveness: sections.Liveness, now: dt.datetime
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, set[str]]]:
    """(an entry for each run of the scope and each active or interrupted run, the running ones,
    the interrupted ones, {"running"/"interrupted": processors with work left in such runs})."""
    live = store.list_runs(statuses=(*ACTIVE_RUN_STATUSES, "interrupted"), limit=None)
    every = {run.id: run for run in [*scoped, *live] if run.id is not None}
    counts = store.progress(list(every))
    entries = {
        run_id: sections.run_entry(store, run, counts[run_id], liveness(run), now)
        for run_id, run in sorted(every.items())
    }
    running = [e for e in entries.values() if e["status"] in ACTIVE_RUN_STATUSES]
    interrupted = [e for e in entries.values() if e["status"] == "interrupted"]
    busy: dict[str, set[str]] = {"running": set(), "interrupted": set()}
    for kind, group in (("running", running), ("interrupted", interrupted)):
        for entry in group:
            entry["processor_progress"] = {
                name: {
                    "done": c["succeeded"],
                    "work": sum(c.values()) - c["skipped"],
                    "failed": c["failed"],
                    "pending": c["pending"] + c["running"],
                }
                for name, c in store.processor_progress(entry["id"]).items()
            }
            busy[kind].update(n for n, c in entry["processor_progress"].items() if c["pending"])
    return entries, running, interrupted, busy


def _coverages(
    workspace: Workspace, store: Store, calendar_for: CalendarFor | None, versions: dict[str, str] | None
) -> tuple[tuple[dt.date, dt.date] | None, list[str], dict[str, ProcessorCoverage]]:
    """(the range reported on, what could not be read, coverage per processor).

    A calendar query that fails or a version command that fails does not stop the report: it
    says what it could not count instead.
    """
    config = workspace.config
    try:
        span = coverage_range(config, store, None, None)
    except UsageError:
        return None, [], {}
    warnings = []
    calendar = Calendar(config.calendar)
    if calendar_for is not None:
        try:
            calendar = calendar_for(*span)
        except RunbookError as error:
            warnings.append(f"calendar query failed, off-days from runbook.yaml only: {error.message}")
    if versions is None:
        versions = {}
        for name in config.processors:
            try:
                versions.update(resolve_versions(config, [name], str(workspace.root)))
            except RunbookError as error:
                warnings.append(
                    f"code version of {name} unknown, its stale dates are not counted: {error.message}"
                )
    calendar_dates: dict[int, list[tuple[str, str | None]]] = {}  # per bootstrap window
    coverages = {}
    for name in config.processors:
        bootstrap = config.bootstrap_days(name)
        if bootstrap not in calendar_dates:
            calendar_dates[bootstrap] = [(d.isoformat(), why) for d, why in calendar.dates(*span, bootstrap)]
        coverages[name] = processor_coverage(
            store, config, calendar, name, span[0], span[1], versions.get(name), calendar_dates=calendar_dates[bootstrap]
        )  # fmt: skip
    return span, warnings, coverages


def _failed_rows(order: Any, coverages: dict[str, ProcessorCoverage]) -> list[tuple[str, Any]]:
    """(processor, task row) of every failed task that is a date's newest attempt, by processor and date."""
    found: list[tuple[str, Any]] = []
    for name in order:
        coverage = coverages.get(name)
        if coverage is None:
            continue
        found += [(name, row) for row in coverage.attempts("failed")]
    return found


def _blocked_reasons(
    store: Store, coverages: dict[str, ProcessorCoverage], checks: list[dict[str, Any]]
) -> dict[str, str]:
    """Why each blocked processor is blocked: a failing check, or its newest blocked task's reason."""
    reasons: dict[str, str] = {}
    for check in checks:
        if not check["passed"] and check["severity"] == "block":
            reasons.setdefault(check["processor"], f"its blocking check {check['check']} failed")
    newest: dict[str, int] = {}
    for name, coverage in coverages.items():
        ids = [row.id for row in coverage.attempts("blocked")]
        if ids and name not in reasons:
            newest[name] = max(ids)
    errors = store.task_errors(list(newest.values()))
    for name, task_id in newest.items():
        lines = (errors.get(task_id) or "").strip().splitlines()
        reasons[name] = lines[0] if lines else "an upstream date failed or was blocked"
    return reasons


def _workspace_info(workspace: Workspace) -> dict[str, Any]:
    url = workspace.database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if path.is_relative_to(workspace.root):
            url = f"sqlite:///{path.relative_to(workspace.root)}"
    return {"name": workspace.config.name, "config": workspace.config_path.name, "database": redact_url(url)}


def _session_info(session: WorkSession | None) -> dict[str, Any] | None:
    if session is None:
        return None
    return {
        "id": session.id,
        "title": session.title,
        "started_at": iso_time(session.started_at),
        "ended_at": iso_time(session.ended_at),
        "open": session.ended_at is None,
        "handoff_path": session.handoff_path,
    }


# ISO dates and times cannot hold a credential, so only the known secret values are looked for in
# them: the report holds thousands, and the redactor's patterns are the costly part.
_DATE_OR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:T[\d:.]+Z)?")


def redact_tree(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` with every string inside it (not the keys of mappings) passed through ``redact``."""
    secrets = getattr(redact, "secrets", None)
    if isinstance(value, str):
        if secrets is not None and _DATE_OR_TIME.fullmatch(value):
            return redact(value) if any(secret in value for secret in secrets) else value
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_tree(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(item, redact) for item in value]
    return value
