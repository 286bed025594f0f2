"""The report's status tables: one row per processor, grouped by ``phase:``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runbook.kinds import ProcessorStatus
from runbook.reports.heatmap import phase_title
from runbook.snapshots import to_data
from runbook.snapshots.processors import ProcessorState

# In order of precedence: a processor that is running shows as running even if it has gaps.
STATUS_EMOJI = {
    ProcessorStatus.RUNNING: "🔄",
    ProcessorStatus.INTERRUPTED: "⏸️",
    ProcessorStatus.BLOCKED: "⛔",
    ProcessorStatus.FAILED: "❌",
    ProcessorStatus.COMPLETE: "✅",
    ProcessorStatus.PARTIAL: "🟡",
    ProcessorStatus.NOT_STARTED: "⬜",
}


def phase_tables(states: Iterable[ProcessorState]) -> list[dict[str, Any]]:
    """Processors grouped by phase, phases in the order they first appear in runbook.yaml."""
    phases: dict[str, list[ProcessorState]] = {}
    for state in states:
        phases.setdefault(state.phase, []).append(state)
    return [
        {
            "phase": phase,
            "title": phase_title(phase),
            "processors": [{**to_data(m), "emoji": STATUS_EMOJI[m.status]} for m in members],
            "complete": sum(1 for m in members if m.status == ProcessorStatus.COMPLETE),
            "total": len(members),
        }
        for phase, members in phases.items()
    ]
