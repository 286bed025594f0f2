"""The report's sections built from runs, tasks, events, checks and notes: plain data.

Times are ISO 8601 UTC strings (``2026-01-07T17:40:00Z``); the templates show them in the
report's time zone. Nothing here formats for a human or knows about Markdown.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from runbook.config import RunbookConfig
from runbook.coverage import iso_time
from runbook.liveness import effective_status, rate_and_eta
from runbook.state.models import ACTIVE_RUN_STATUSES, CheckResult, Event, Note, Run
from runbook.state.store import Store

NOTE_KINDS = ("fix", "issue", "decision", "next")
ERROR_TAIL_LINES = 15
_PARAMETER = re.compile(r"(?<![@\w])@([A-Za-z_][A-Za-z0-9_]*)")

Liveness = Callable[[Run], bool]


def run_entry(store: Store, run: Run, counts: Counter[str], alive: bool, now: dt.datetime) -> dict[str, Any]:
    """One run: status, progress over its runnable tasks, rate, ETA, PID, log and commands."""
    assert run.id is not None
    status = effective_status(run, alive)
    work = sum(counts.values()) - counts["skipped"]
    remaining = counts["pending"] + counts["running"]
    rate = eta = None
    if status in ACTIVE_RUN_STATUSES or status == "interrupted":
        rate, eta = rate_and_eta(*store.finished_window(run.id), remaining, status)
    commands = {"show": f"runbook show {run.id}", "logs": f"runbook logs {run.id}"}
    if status in ACTIVE_RUN_STATUSES:
        commands.update(
            watch="runbook status", follow=f"runbook logs {run.id} -f", stop=f"runbook stop {run.id}"
        )
    if status in ("interrupted", "failed", "blocked"):
        commands["resume"] = f"runbook resume {run.id}"
    return {
        "id": run.id,
        "processors": list(run.processors),
        "status": status,
        "start_date": run.start_date,
        "end_date": run.end_date,
        "pid": run.pid,
        "host": run.host,
        "alive": alive,
        "workers": run.workers,
        "log_path": run.log_path,
        "command_line": run.command_line,
        "error": run.error,
        "session_id": run.session_id,
        "versions": dict(run.versions),
        "progress": {
            "work": work,
            "done": counts["succeeded"],
            "failed": counts["failed"],
            "blocked": counts["blocked"],
            "running": counts["running"],
            "pending": counts["pending"],
            "skipped": counts["skipped"],
            "percent": round(100 * counts["succeeded"] / work, 1) if work else None,
        },
        "rate_per_hour": round(rate, 1) if rate is not None else None,
        "eta_seconds": round(eta) if eta is not None else None,
        "eta_at": iso_time(now + dt.timedelta(seconds=eta)) if eta is not None else None,
        "created_at": iso_time(run.created_at),
        "started_at": iso_time(run.started_at),
        "heartbeat_at": iso_time(run.heartbeat_at),
        "finished_at": iso_time(run.finished_at),
        "wall_seconds": _seconds(run.started_at, run.finished_at or (now if status == "running" else None)),
        "commands": commands,
    }


def _seconds(first: dt.datetime | None, last: dt.datetime | None) -> float | None:
    return round((last - first).total_seconds(), 1) if first and last else None


def fill_parameters(query: str, params: dict[str, Any]) -> str:
    """The query with ``@name`` parameters replaced by literals, for reading and pasting."""

    def literal(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            return match.group(0)
        value = params[name]
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int | float):
            return repr(value)
        return "'" + str(value).replace("'", "''") + "'"

    return _PARAMETER.sub(literal, query)


def _condition(condition: dict[str, Any]) -> dict[str, Any]:
    """A stored condition ({expr, left, op, right, passed} or {expr, value, threshold, passed})."""
    return {
        "expr": str(condition.get("expr", "")),
        "value": condition.get("value", condition.get("left")),
        "op": condition.get("op"),
        "threshold": condition.get("threshold", condition.get("right")),
        "passed": bool(condition.get("passed")),
    }


def check_entries(results: Iterable[CheckResult], config: RunbookConfig) -> list[dict[str, Any]]:
    """The newest result of each check, failing ones first (blocking before warnings)."""
    order = {name: position for position, name in enumerate(config.processors)}
    entries: list[dict[str, Any]] = []
    for result in results:
        conditions = [_condition(c) for c in result.conditions if isinstance(c, dict)]
        configured = config.processors.get(result.processor)
        description = next(
            (c.description for c in (configured.checks if configured else []) if c.name == result.check_name),
            "",
        )
        entries.append(
            {
                "processor": result.processor,
                "check": result.check_name,
                "description": description,
                "severity": result.severity,
                "passed": bool(result.passed),
                "run_id": result.run_id,
                "at": iso_time(result.at),
                "start_date": result.start_date,
                "end_date": result.end_date,
                "conditions": conditions,
                "metrics": dict(result.metrics),
                "error": result.error,
                "query": fill_parameters(result.query, dict(result.params)).strip(),
                "params": dict(result.params),
            }
        )
    entries.sort(
        key=lambda e: (e["passed"], e["severity"] != "block", order.get(e["processor"], 1 << 30), e["check"])
    )
    return entries


def failure_entries(failed: Sequence[tuple[str, Any]], errors: dict[int, str | None]) -> list[dict[str, Any]]:
    """Failed tasks ((processor, row of :meth:`Store.latest_by_date`)) with their error's tail."""
    entries = []
    for processor, row in failed:
        tail = (errors.get(row.id) or "").rstrip().splitlines()[-ERROR_TAIL_LINES:]
        entries.append(
            {
                "processor": processor,
                "date": row.date,
                "end_date": row.end_date,
                "run_id": row.run_id,
                "attempts": row.attempt,
                "exit_code": row.exit_code,
                "error_tail": "\n".join(tail),
                "retry": f"runbook run {processor} --start {row.date} --end {row.end_date}",
            }
        )
    return entries


def event_entry(event: Event) -> dict[str, Any]:
    return {
        "at": iso_time(event.at),
        "kind": event.kind,
        "run_id": event.run_id,
        "processor": event.processor,
        "date": event.date,
        "message": event.message,
    }


def processor_windows(stats: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run and processor (from :meth:`Store.run_processor_stats`): steps that ran, their
    first start and last finish, and task counts by status."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for row in stats:
        key = (row["run_id"], row["processor"])
        window = found.setdefault(
            key,
            {
                "run_id": key[0],
                "processor": key[1],
                "first_start": None,
                "last_finish": None,
                "counts": Counter(),
            },
        )
        window["counts"][row["status"]] += row["tasks"]
        if row["first_start"] is not None:
            first = window["first_start"]
            window["first_start"] = row["first_start"] if first is None else min(first, row["first_start"])
        if row["last_finish"] is not None and row["status"] in ("succeeded", "failed"):
            last = window["last_finish"]
            window["last_finish"] = row["last_finish"] if last is None else max(last, row["last_finish"])
    return list(found.values())


def gantt_entries(
    windows: Sequence[dict[str, Any]], runs: dict[int, dict[str, Any]], now: dt.datetime
) -> list[dict[str, Any]]:
    """One bar per run and processor: from its first step's start to its last step's end."""
    bars = []
    for window in windows:
        run = runs.get(window["run_id"])
        if run is None or window["first_start"] is None:
            continue
        last = window["last_finish"] or window["first_start"]
        if run["status"] == "running":
            last = max(last, now)
        bars.append(
            {
                "run_id": window["run_id"],
                "processor": window["processor"],
                "status": run["status"],
                "start": iso_time(window["first_start"]),
                "end": iso_time(last),
            }
        )
    return bars


def performance_entries(
    windows: Sequence[dict[str, Any]], runs: dict[int, dict[str, Any]], config: RunbookConfig
) -> list[dict[str, Any]]:
    """Per processor over the report's runs: dates built, wall time, dates per hour, workers."""
    found: dict[str, dict[str, Any]] = {}
    for window in windows:
        name, run_id = window["processor"], window["run_id"]
        if window["first_start"] is None or window["last_finish"] is None or run_id not in runs:
            continue
        entry = found.setdefault(
            name, {"processor": name, "dates": 0, "failed": 0, "wall_seconds": 0.0, "workers": set()}
        )
        batch = config.processors[name].batch_days if name in config.processors else 1
        entry["dates"] += window["counts"]["succeeded"] * batch
        entry["failed"] += window["counts"]["failed"]
        entry["wall_seconds"] += max((window["last_finish"] - window["first_start"]).total_seconds(), 0.0)
        entry["workers"].add(runs[run_id]["workers"])
    order = {name: position for position, name in enumerate(config.processors)}
    entries = []
    for entry in sorted(found.values(), key=lambda e: order.get(e["processor"], 1 << 30)):
        hours = entry["wall_seconds"] / 3600
        entry["dates_per_hour"] = round(entry["dates"] / hours, 1) if hours > 0 else None
        entry["wall_seconds"] = round(entry["wall_seconds"], 1)
        entry["workers"] = sorted(entry["workers"])
        entries.append(entry)
    return entries


def note_entries(notes: Iterable[Note]) -> dict[str, list[dict[str, Any]]]:
    """Notes grouped by kind: fix, issue, decision, next (then any other kind), oldest first."""
    grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in NOTE_KINDS}
    for note in notes:
        grouped.setdefault(note.kind, []).append(
            {
                "id": note.id,
                "kind": note.kind,
                "text": note.text,
                "at": iso_time(note.at),
                "session_id": note.session_id,
            }
        )
    return grouped
