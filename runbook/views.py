"""The data behind every inspecting command: plain dicts with the stable shapes of docs/json.md.

The CLI prints these as JSON with ``--json`` or hands them to ``runbook.render`` for tables, so
the human and machine outputs can never disagree.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from runbook.liveness import controller_alive, effective_status, rate_and_eta
from runbook.planner import Plan
from runbook.state.models import ACTIVE_RUN_STATUSES, Event, Run, Task, utcnow
from runbook.state.store import Store

JSON_SCHEMA_VERSION = 1


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def progress(counts: Counter[str]) -> dict[str, int]:
    return {
        "total": sum(counts.values()),
        "done": counts["succeeded"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
        "running": counts["running"],
        "pending": counts["pending"],
        "blocked": counts["blocked"],
    }


def run_summary(store: Store, run: Run, counts: Counter[str]) -> dict[str, Any]:
    """One run as ``status --json`` and ``history --json`` show it."""
    assert run.id is not None
    alive = controller_alive(run)
    status = effective_status(run, alive)
    rate, eta = rate_and_eta(*store.finished_window(run.id), counts["pending"] + counts["running"], status)
    return {
        "id": run.id,
        "processors": list(run.processors),
        "status": status,
        "start_date": run.start_date,
        "end_date": run.end_date,
        "pid": run.pid,
        "host": run.host,
        "controller_alive": alive,
        "log_path": run.log_path,
        "workers": run.workers,
        "progress": progress(counts),
        "rate_per_hour": round(rate, 2) if rate is not None else None,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "heartbeat_at": iso(run.heartbeat_at),
        "finished_at": iso(run.finished_at),
        "session_id": run.session_id,
        "versions": dict(run.versions),
        "command_line": run.command_line,
        "error": run.error,
    }


def status_view(store: Store, *, recent: int = 5) -> dict[str, Any]:
    """Active and interrupted runs, then the ``recent`` latest finished ones."""
    live = store.list_runs(statuses=(*ACTIVE_RUN_STATUSES, "interrupted"), limit=None)
    done = store.list_runs(statuses=("succeeded", "failed", "blocked", "cancelled"), limit=recent)
    runs = sorted({r.id: r for r in [*live, *done]}.values(), key=lambda r: r.id or 0, reverse=True)
    counts = store.progress([r.id for r in runs if r.id is not None])
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "generated_at": iso(utcnow()),
        "runs": [run_summary(store, run, counts[run.id]) for run in runs if run.id is not None],
    }


def history_view(
    store: Store,
    *,
    processor: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    overlapping: tuple[str, str] | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    runs = store.list_runs(
        statuses=[status] if status else None,
        processor=processor,
        since=since,
        overlapping=overlapping,
        limit=limit,
    )
    ids = [r.id for r in runs if r.id is not None]
    counts = store.progress(ids)
    checks = store.run_check_outcomes(ids)
    outcomes = store.run_outcomes(ids)
    summaries = []
    for run in runs:
        assert run.id is not None
        entry = run_summary(store, run, counts[run.id])
        failing = [f"{proc}.{name}" for proc, name, passed in checks[run.id] if not passed]
        entry["checks"] = {
            "passed": len(checks[run.id]) - len(failing),
            "failed": len(failing),
            "failing": failing,
        }
        order = [*run.processors, *sorted(set(outcomes[run.id]) - set(run.processors))]
        entry["outcomes"] = {
            name: dict(sorted(outcomes[run.id][name].items())) for name in order if name in outcomes[run.id]
        }
        summaries.append(entry)
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "filters": {"processor": processor, "status": status, "since": iso(since), "dates": overlapping},
        "runs": summaries,
    }


def task_view(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "processor": task.processor,
        "date": task.date,
        "end_date": task.end_date,
        "status": task.status,
        "attempt": task.attempt,
        "skip_reason": task.skip_reason,
        "code_version": task.code_version,
        "exit_code": task.exit_code,
        "rows_affected": task.rows_affected,
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "duration_seconds": round(task.duration_seconds, 3) if task.duration_seconds is not None else None,
        "error_tail": task.error_tail,
    }


def event_view(event: Event) -> dict[str, Any]:
    return {
        "at": iso(event.at),
        "kind": event.kind,
        "run_id": event.run_id,
        "processor": event.processor,
        "date": event.date,
        "message": event.message,
    }


def show_view(store: Store, run: Run, *, with_tasks: bool = False) -> dict[str, Any]:
    assert run.id is not None
    tasks = store.tasks(run.id)
    counts = Counter(t.status for t in tasks)
    per_processor: dict[str, dict[str, int]] = {}
    for task in tasks:
        entry = per_processor.setdefault(task.processor, {"total": 0})
        entry["total"] += 1
        entry[task.status] = entry.get(task.status, 0) + 1
        if task.skip_reason:
            key = f"skipped_{task.skip_reason}"
            entry[key] = entry.get(key, 0) + 1
    failures = [task_view(t) for t in tasks if t.status in ("failed",)]
    blocked = [task_view(t) for t in tasks if t.status == "blocked"][:50]
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "run": run_summary(store, run, counts),
        "processors": per_processor,
        "failures": failures,
        "blocked": blocked,
        "checks": _check_views(store, run.id),
        "events": [event_view(e) for e in store.events(run_id=run.id)],
        "tasks": [task_view(t) for t in tasks] if with_tasks else None,
    }


def _check_views(store: Store, run_id: int) -> list[dict[str, Any]]:
    from runbook.checks import result_view

    return [result_view(result) for result in store.check_results(run_id=run_id)]


def plan_view(plan: Plan, *, with_dates: bool = True) -> dict[str, Any]:
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "processors": plan.processors,
        "start": plan.start.isoformat(),
        "end": plan.end.isoformat(),
        "versions": plan.versions,
        "counts": plan.counts(),
        "dates": [
            {
                "processor": task.processor,
                "date": task.date.isoformat(),
                "end_date": task.end_date.isoformat(),
                "action": "run" if task.runnable else "skip",
                "reason": task.skip_reason,
            }
            for task in sorted(plan.tasks, key=lambda t: t.seq)
        ]
        if with_dates
        else None,
    }
