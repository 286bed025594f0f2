"""The workspace's status in one word (running, interrupted, blocked, failed, incomplete,
complete or idle), with its label and emoji: the headline the handoff shows above its next actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runbook.kinds import OverallStatus, ProcessorStatus, Severity
from runbook.snapshots.model import CheckSnapshot, RunSnapshot
from runbook.snapshots.processors import ProcessorState

OVERALL_EMOJI = {
    OverallStatus.RUNNING: "🔄",
    OverallStatus.INTERRUPTED: "⏸️",
    OverallStatus.BLOCKED: "⛔",
    OverallStatus.FAILED: "❌",
    OverallStatus.INCOMPLETE: "🟡",
    OverallStatus.COMPLETE: "✅",
    OverallStatus.IDLE: "⬜",
}
# The headline word, for people and agents: "blocked" is only ever a failed blocking check.
OVERALL_LABEL = {
    OverallStatus.RUNNING: "running",
    OverallStatus.INTERRUPTED: "interrupted",
    OverallStatus.BLOCKED: "blocked by check",
    OverallStatus.FAILED: "failed",
    OverallStatus.INCOMPLETE: "incomplete",
    OverallStatus.COMPLETE: "complete",
    OverallStatus.IDLE: "idle",
}


def overall_status(
    processors: Sequence[ProcessorState],
    running: Sequence[RunSnapshot],
    interrupted: Sequence[RunSnapshot],
    checks: Sequence[CheckSnapshot],
    any_runs: bool,
) -> dict[str, Any]:
    """The workspace in one word, first that applies: running, interrupted, blocked (a blocking
    check fails), failed (dates whose newest attempt failed, or blocked by them), incomplete
    (dates never built, or stale), complete; idle without any run."""
    failing = [c for c in checks if not c.passed]
    failing_gates = [c for c in failing if c.severity == Severity.BLOCK]
    blocked = [p.name for p in processors if p.status == ProcessorStatus.BLOCKED]
    failed = [p.name for p in processors if p.failed]
    gaps = [p.name for p in processors if p.gaps]
    stale = [p.name for p in processors if p.stale]
    status: OverallStatus
    if running:
        status = OverallStatus.RUNNING
    elif interrupted:
        status = OverallStatus.INTERRUPTED
    elif failing_gates:
        status = OverallStatus.BLOCKED
    elif failed or blocked:
        status = OverallStatus.FAILED
    elif not any_runs:
        status = OverallStatus.IDLE
    elif gaps or stale:
        status = OverallStatus.INCOMPLETE
    else:
        status = OverallStatus.COMPLETE
    return {
        "status": status,
        "label": OVERALL_LABEL[status],
        "emoji": OVERALL_EMOJI[status],
        "running_runs": [r.id for r in running],
        "interrupted_runs": [r.id for r in interrupted],
        "blocked_processors": blocked,
        "failing_checks": [f"{c.processor}.{c.check}" for c in failing],
        "failing_gates": [f"{c.processor}.{c.check}" for c in failing_gates],
        "failed_processors": failed,
        "processors_with_gaps": gaps,
        "processors_with_stale": stale,
    }


__all__ = [
    "OVERALL_EMOJI",
    "OVERALL_LABEL",
    "overall_status",
]
