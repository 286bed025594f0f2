"""Every processor of the workspace over a range: its coverage, and its row of the status tables.

:func:`workspace_coverages` reads the coverage of every processor in one statement; the
handoff's status tables (:func:`processor_state`) and the heat map
(:mod:`runbook.snapshots.heatmap`) are both drawn from it. A calendar query or a version command
that fails does not stop them: they say what they could not count instead.
"""

import datetime as dt
from collections.abc import Callable
from typing import Any, NamedTuple

from runbook.config import RunbookConfig
from runbook.engine.calendar import Calendar
from runbook.errors import RunbookError
from runbook.formatting import percent
from runbook.kinds import ProcessorStatus, TaskStatus
from runbook.snapshots.coverage import ProcessorCoverage, processor_coverages
from runbook.snapshots.model import DateRange
from runbook.state.queries import Queries
from runbook.workspace import Workspace

CalendarFor = Callable[[dt.date, dt.date], Calendar]


def workspace_coverages(
    workspace: Workspace,
    q: Queries | None,
    span: tuple[dt.date, dt.date],
    *,
    calendar_for: CalendarFor | None = None,
    versions: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, ProcessorCoverage]]:
    """(what could not be read, the coverage of ``span`` of every processor, in config order).

    ``calendar_for`` gives the calendar with its ``calendar: query:`` (runbook.yaml's off-days
    alone when it is None or fails); ``versions`` the current code versions (resolved here when
    None; a processor whose version command fails has no stale dates).
    """
    from runbook.engine.versions import resolve_versions

    config = workspace.config
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
    names = list(config.processors)
    return warnings, processor_coverages(q, config, calendar, names, span[0], span[1], versions)


class ProcessorState(NamedTuple):
    """One processor across the workspace's range: built of expected, failures, gaps, its status.

    ``status`` is the first that applies: running, interrupted, blocked, failed, complete,
    partial, not_started.
    """

    name: str
    phase: str
    description: str
    needs: list[str]
    version: str | None
    expected: int | None
    built: int
    percent: float | None
    gaps: int
    gap_ranges: list[DateRange]
    stale: int
    stale_ranges: list[DateRange]
    failed: int
    failed_ranges: list[DateRange]
    blocked: int
    blocked_ranges: list[DateRange]
    skipped: dict[str, int]
    rows_affected: int | None
    status: ProcessorStatus


def processor_state(
    name: str,
    config: RunbookConfig,
    coverage: ProcessorCoverage | None,
    *,
    running: set[str],
    interrupted: set[str],
    failing_gates: set[str],
) -> ProcessorState:
    """One processor's row of the status tables (``failing_gates``: processors whose newest
    blocking check result failed; kept for callers, it no longer makes the processor blocked)."""
    proc = config.processors[name]
    values: dict[str, Any] = {
        "expected": None, "built": 0, "percent": None, "gaps": 0, "gap_ranges": [], "stale": 0, "stale_ranges": [],
        "failed": 0, "failed_ranges": [], "blocked": 0, "blocked_ranges": [], "skipped": {}, "rows_affected": None,
    }  # fmt: skip
    if coverage is not None:
        built, gaps, stale = coverage.built(), coverage.gaps(), coverage.stale()
        failed = coverage.with_last_attempt(TaskStatus.FAILED)
        blocked = coverage.with_last_attempt(TaskStatus.BLOCKED)
        skipped = coverage.calendar_skips() + coverage.gap_reasons()
        values.update(
            expected=len(coverage.expected),
            built=len(built),
            percent=percent(len(built), len(coverage.expected)),
            gaps=len(gaps),
            gap_ranges=coverage.ranges(gaps),
            stale=len(stale),
            stale_ranges=coverage.ranges(stale),
            failed=len(failed),
            failed_ranges=coverage.ranges(failed),
            blocked=len(blocked),
            blocked_ranges=coverage.ranges(blocked),
            skipped=dict(sorted(skipped.items())),
            rows_affected=coverage.rows_affected(),
        )
    status: ProcessorStatus
    if name in running:
        status = ProcessorStatus.RUNNING
    elif name in interrupted:
        status = ProcessorStatus.INTERRUPTED
    elif values["blocked"]:
        # Its own dates were blocked (by a failed upstream or a failing gate upstream). A processor
        # whose own check fails built its dates: the check is reported, the processor is not blocked.
        status = ProcessorStatus.BLOCKED
    elif values["failed"]:
        status = ProcessorStatus.FAILED
    elif values["expected"] is not None and values["gaps"] == 0:
        status = ProcessorStatus.COMPLETE
    else:
        status = ProcessorStatus.PARTIAL if values["built"] else ProcessorStatus.NOT_STARTED
    return ProcessorState(
        name=name,
        phase=proc.phase,
        description=proc.description,
        needs=list(proc.needs),
        version=coverage.version if coverage else None,
        status=status,
        **values,
    )
