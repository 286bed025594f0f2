"""The report's per-run sections: the Gantt bars and the performance table.

Times are ISO 8601 UTC strings; the templates show them in the report's time zone.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from runbook.config import RunbookConfig
from runbook.formatting import iso_utc
from runbook.kinds import RunStatus, TaskStatus
from runbook.snapshots.model import RunSnapshot


def processor_windows(stats: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run and processor (from :meth:`Queries.run_processor_stats`): steps that ran, their
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
                "days": Counter(),
            },
        )
        window["counts"][row["status"]] += row["tasks"]
        window["days"][row["status"]] += int(row.get("days") or row["tasks"])
        if row["first_start"] is not None:
            first = window["first_start"]
            window["first_start"] = row["first_start"] if first is None else min(first, row["first_start"])
        if row["last_finish"] is not None and row["status"] in (TaskStatus.SUCCEEDED, TaskStatus.FAILED):
            last = window["last_finish"]
            window["last_finish"] = row["last_finish"] if last is None else max(last, row["last_finish"])
    return list(found.values())


def gantt_entries(
    windows: Sequence[dict[str, Any]], runs: dict[int, RunSnapshot], now: dt.datetime
) -> list[dict[str, Any]]:
    """One bar per run and processor: from its first step's start to its last step's end."""
    bars = []
    for window in windows:
        run = runs.get(window["run_id"])
        if run is None or window["first_start"] is None:
            continue
        last = window["last_finish"] or window["first_start"]
        if run.status == RunStatus.RUNNING:
            last = max(last, now)
        bars.append(
            {
                "run_id": window["run_id"],
                "processor": window["processor"],
                "status": run.status,
                "start": iso_utc(window["first_start"]),
                "end": iso_utc(last),
            }
        )
    return bars


TIB = 1024**4


def performance_entries(
    windows: Sequence[dict[str, Any]], runs: dict[int, RunSnapshot], config: RunbookConfig
) -> list[dict[str, Any]]:
    """Per processor over the report's runs: dates built, wall time, dates per hour, workers, and
    what its warehouse jobs cost (bytes processed and billed, slot ms, dollars at
    ``warehouse.price_per_tib`` of the bytes billed; null where no task reported a cost)."""
    found: dict[str, dict[str, Any]] = {}
    spent: dict[str, list[Any]] = {}
    for run in runs.values():
        for part in run.per_processor:
            if part.cost is not None:
                spent.setdefault(part.name, []).append(part.cost)
    for window in windows:
        name, run_id = window["processor"], window["run_id"]
        if window["first_start"] is None or window["last_finish"] is None or run_id not in runs:
            continue
        entry = found.setdefault(
            name, {"processor": name, "dates": 0, "failed": 0, "wall_seconds": 0.0, "workers": set()}
        )
        entry["dates"] += window["days"][TaskStatus.SUCCEEDED]  # dates, not tasks: a chunk counts its dates
        entry["failed"] += window["counts"][TaskStatus.FAILED]
        entry["wall_seconds"] += max((window["last_finish"] - window["first_start"]).total_seconds(), 0.0)
        entry["workers"].add(runs[run_id].workers)
    order = {name: position for position, name in enumerate(config.processors)}
    entries = []
    for entry in sorted(found.values(), key=lambda e: order.get(e["processor"], 1 << 30)):
        hours = entry["wall_seconds"] / 3600
        entry["dates_per_hour"] = round(entry["dates"] / hours, 1) if hours > 0 else None
        entry["wall_seconds"] = round(entry["wall_seconds"], 1)
        entry["workers"] = sorted(entry["workers"])
        costs = spent.get(entry["processor"], [])
        for field in ("bytes_processed", "bytes_billed", "slot_ms"):
            entry[field] = sum(getattr(cost, field) for cost in costs) if costs else None
        billed = entry["bytes_billed"]
        entry["cost_usd"] = (
            round(billed / TIB * config.warehouse.price_per_tib, 4) if billed is not None else None
        )
        entries.append(entry)
    return entries
