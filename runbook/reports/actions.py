"""The report's verdicts: the overall status line and the next actions, derived from the snapshots.

Next actions come in a fixed order: runs to watch, runs to resume, failing checks to look at,
blocked processors and why, failed dates, downstream processors whose upstreams are complete,
processors waiting for an upstream, gaps and stale dates to fill, then the ``next`` notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runbook.formatting import span as date_span
from runbook.kinds import OverallStatus, ProcessorStatus, Severity
from runbook.snapshots.model import BlockedGroup, CheckSnapshot, DateRange, NoteSnapshot, RunSnapshot
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


def overall_status(
    processors: Sequence[ProcessorState],
    running: Sequence[RunSnapshot],
    interrupted: Sequence[RunSnapshot],
    checks: Sequence[CheckSnapshot],
    any_runs: bool,
) -> dict[str, Any]:
    """complete / running / blocked / failed / interrupted (or incomplete, or idle with no runs)."""
    blocked = [p.name for p in processors if p.status == ProcessorStatus.BLOCKED]
    failing = [c for c in checks if not c.passed]
    failed = [p.name for p in processors if p.failed]
    gaps = [p.name for p in processors if p.gaps]
    status: OverallStatus
    if running:
        status = OverallStatus.RUNNING
    elif interrupted:
        status = OverallStatus.INTERRUPTED
    elif blocked or any(c.severity == Severity.BLOCK for c in failing):
        status = OverallStatus.BLOCKED
    elif failed:
        status = OverallStatus.FAILED
    elif not any_runs:
        status = OverallStatus.IDLE
    elif gaps:
        status = OverallStatus.INCOMPLETE
    else:
        status = OverallStatus.COMPLETE
    return {
        "status": status,
        "emoji": OVERALL_EMOJI[status],
        "running_runs": [r.id for r in running],
        "interrupted_runs": [r.id for r in interrupted],
        "blocked_processors": blocked,
        "failing_checks": [f"{c.processor}.{c.check}" for c in failing],
        "failed_processors": failed,
        "processors_with_gaps": gaps,
    }


def _span(found: Sequence[DateRange]) -> str:
    return f"--start {found[0].start} --end {found[-1].end}" if found else ""


def next_actions(
    processors: Sequence[ProcessorState],
    running: Sequence[RunSnapshot],
    interrupted: Sequence[RunSnapshot],
    checks: Sequence[CheckSnapshot],
    blocked: Sequence[BlockedGroup],
    next_notes: Sequence[NoteSnapshot],
) -> list[dict[str, Any]]:
    """What to do next, each with the exact command where there is one."""
    actions: list[dict[str, Any]] = []

    def add(kind: str, text: str, command: str | None = None) -> None:
        actions.append({"kind": kind, "text": text, "command": command})

    for run in running:
        p = run.progress
        add(
            "watch",
            f"Run {run.id} is running ({', '.join(run.processors)}): {p.succeeded}/{p.work} tasks done",
            run.commands["follow"],
        )
    for run in interrupted:
        p = run.progress
        add(
            "resume",
            f"Resume interrupted run {run.id} ({', '.join(run.processors)}): {p.succeeded}/{p.work} tasks done",
            f"runbook resume {run.id}",
        )
    for check in checks:
        if not check.passed:
            failed = [c.expr for c in check.conditions if not c.passed]
            why = check.error or "; ".join(failed) or "failed"
            add(
                "check",
                f"Investigate {check.severity} check {check.check} on {check.processor} ({why}), then re-validate",
                f"runbook validate {check.processor} --start {check.start_date} --end {check.end_date}",
            )
    busy = {name for run in [*running, *interrupted] for name in run.processors}
    by_name = {p.name: p for p in processors}
    reasons = {group.processor: group.reason for group in blocked}
    for check in checks:
        if not check.passed and check.severity == Severity.BLOCK:
            reasons.setdefault(check.processor, f"its blocking check {check.check} failed")
    for entry in processors:
        if entry.status == ProcessorStatus.BLOCKED and entry.name in reasons:
            add("blocked", f"{entry.name} is blocked: {reasons[entry.name]}")
    for entry in processors:
        if entry.failed and entry.name not in busy:
            first = entry.failed_ranges[0].start if entry.failed_ranges else None
            add(
                "failed",
                f"{entry.failed} date(s) of {entry.name} failed"
                + (f" (first: {first}); see Failures" if first else ""),
                f"runbook run {entry.name} {_span(entry.failed_ranges)}".rstrip(),
            )
    for entry in processors:
        name = entry.name
        done = (ProcessorStatus.COMPLETE, ProcessorStatus.BLOCKED, ProcessorStatus.FAILED)
        if name in busy or entry.status in done or not entry.gaps:
            continue
        ups = [by_name[up] for up in entry.needs if up in by_name]
        waiting = [up for up in ups if up.status != ProcessorStatus.COMPLETE]
        if ups and not waiting:
            add(
                "ready",
                f"Upstreams of {name} are complete ({', '.join(entry.needs)}): build its {entry.gaps} missing date(s)",
                f"runbook run {name} --only-gaps {_span(entry.gap_ranges)}",
            )
        elif waiting:
            up = waiting[0]
            pct = f"{up.percent}% built" if up.percent is not None else up.status
            add("waiting", f"{name} waits for {up.name} ({pct})")
        else:
            add(
                "gaps",
                f"Fill {entry.gaps} date(s) of {name} never built",
                f"runbook run {name} --only-gaps {_span(entry.gap_ranges)}",
            )
    for entry in processors:
        if entry.stale and entry.name not in busy:
            add(
                "stale",
                f"Rebuild {entry.stale} date(s) of {entry.name} built with an older code version than {entry.version}",
                f"runbook run {entry.name} --only-stale {_span(entry.stale_ranges)}",
            )
    if processors and all(p.expected is None for p in processors) and not running and not interrupted:
        add(
            "start",
            "No dates to report on yet: set calendar.start/end in runbook.yaml or start a first run",
            "runbook run --start YYYY-MM-DD --end YYYY-MM-DD",
        )
    for note in next_notes:
        add("note", note.text)
    return actions


__all__ = ["OVERALL_EMOJI", "date_span", "next_actions", "overall_status"]
