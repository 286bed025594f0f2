"""The report's status tables: one row per processor, grouped by ``phase:``, from its coverage."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runbook.config import RunbookConfig
from runbook.coverage import ProcessorCoverage, percent, ranges

# In order of precedence: a processor that is running shows as running even if it has gaps.
STATUS_EMOJI = {
    "running": "🔄",
    "interrupted": "⏸️",
    "blocked": "⛔",
    "failed": "❌",
    "complete": "✅",
    "partial": "🟡",
    "not_started": "⬜",
}


def processor_entry(
    name: str,
    config: RunbookConfig,
    coverage: ProcessorCoverage | None,
    *,
    running: set[str],
    interrupted: set[str],
    failing_blocking_checks: set[str],
) -> dict[str, Any]:
    """One processor's row: dates built of expected, failures, skips by reason, rows, status."""
    proc = config.processors[name]
    entry: dict[str, Any] = {
        "name": name,
        "phase": proc.phase,
        "description": proc.description,
        "needs": list(proc.needs),
        "version": coverage.version if coverage else None,
        "expected": None,
        "done": 0,
        "coverage_pct": None,
        "gaps": 0,
        "gap_ranges": [],
        "stale": 0,
        "stale_ranges": [],
        "failed": 0,
        "failed_ranges": [],
        "blocked": 0,
        "skipped": {},
        "rows_affected": None,
    }
    if coverage is not None:
        expected = coverage.expected
        built, gaps, stale = coverage.built(), coverage.gaps(), coverage.stale()
        failed = coverage.with_last_attempt("failed")
        skipped = coverage.calendar_skips() + coverage.gap_reasons()
        entry.update(
            expected=len(expected),
            done=len(built),
            coverage_pct=percent(len(built), len(expected)),
            gaps=len(gaps),
            gap_ranges=ranges(expected, gaps),
            stale=len(stale),
            stale_ranges=ranges(expected, stale),
            failed=len(failed),
            failed_ranges=ranges(expected, failed),
            blocked=len(coverage.with_last_attempt("blocked")),
            skipped=dict(sorted(skipped.items())),
            rows_affected=coverage.rows_affected(),
        )
    entry["status"] = _status(entry, name, running, interrupted, failing_blocking_checks)
    entry["emoji"] = STATUS_EMOJI[entry["status"]]
    return entry


def _status(
    entry: dict[str, Any], name: str, running: set[str], interrupted: set[str], failing: set[str]
) -> str:
    if name in running:
        return "running"
    if name in interrupted:
        return "interrupted"
    if entry["blocked"] or name in failing:
        return "blocked"
    if entry["failed"]:
        return "failed"
    if entry["expected"] is not None and entry["gaps"] == 0:
        return "complete"
    return "partial" if entry["done"] else "not_started"


def phase_tables(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Processors grouped by phase, phases in the order they first appear in runbook.yaml."""
    phases: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        phases.setdefault(entry["phase"], []).append(entry)
    return [
        {
            "phase": phase,
            "title": _title(phase),
            "processors": members,
            "complete": sum(1 for m in members if m["status"] == "complete"),
            "total": len(members),
        }
        for phase, members in phases.items()
    ]


def _title(phase: str) -> str:
    if not phase:
        return "Processors"
    return f"Phase {phase}" if phase[0].isdigit() else phase
