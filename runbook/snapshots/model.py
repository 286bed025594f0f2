"""The read model's types: typed, frozen snapshots of what the state store says.

They are named tuples: immutable, and cheap to define (a command that prints a status must not
spend its time creating classes).

Every surface renders these and nothing else: the CLI's tables, every ``--json``, the handoff,
and the dashboard and MCP server. :func:`runbook.snapshots.to_data` turns one into the JSON
documented in docs/json.md (``schema_version`` 2). One vocabulary everywhere:

- progress counts tasks as ``total``, ``work`` (total minus skipped), ``succeeded``, ``failed``,
  ``blocked``, ``skipped``, ``pending``, ``running``, ``cancelled`` and ``percent`` (succeeded of
  work, rounded down to one decimal);
- ``alive`` is true, false, or null where it cannot be known;
- times are ISO 8601 UTC strings with a ``Z``, dates ``YYYY-MM-DD``.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

from runbook.formatting import percent as percent_of
from runbook.kinds import TaskStatus


class Progress(NamedTuple):
    """Task counts of a run or of one processor in it."""

    total: int = 0
    work: int = 0
    succeeded: int = 0
    failed: int = 0
    blocked: int = 0
    skipped: int = 0
    pending: int = 0
    running: int = 0
    cancelled: int = 0
    percent: float | None = None

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> "Progress":
        total = sum(counts.values())
        work = total - counts.get(TaskStatus.SKIPPED, 0)
        succeeded = counts.get(TaskStatus.SUCCEEDED, 0)
        return cls(
            total=total,
            work=work,
            succeeded=succeeded,
            failed=counts.get(TaskStatus.FAILED, 0),
            blocked=counts.get(TaskStatus.BLOCKED, 0),
            skipped=counts.get(TaskStatus.SKIPPED, 0),
            pending=counts.get(TaskStatus.PENDING, 0),
            running=counts.get(TaskStatus.RUNNING, 0),
            cancelled=counts.get(TaskStatus.CANCELLED, 0),
            percent=percent_of(succeeded, work),
        )

    @property
    def remaining(self) -> int:
        return self.pending + self.running


class Cost(NamedTuple):
    """What warehouse jobs cost (every attempt counts): bytes processed and billed, slot
    milliseconds, and how many tasks reported a cost."""

    bytes_processed: int
    bytes_billed: int
    slot_ms: int
    tasks: int

    @classmethod
    def total(cls, costs: "list[Cost]") -> "Cost | None":
        if not costs:
            return None
        return cls(*(sum(getattr(cost, name) for cost in costs) for name in cls._fields))


class EstimateSnapshot(NamedTuple):
    """``runbook plan --estimate``: what one SQL processor's steps would scan and cost over the
    plan, from dry runs of its first and last planned task."""

    processor: str
    tasks: int  # planned tasks
    first_date: str | None
    last_date: str | None
    first_bytes: int | None  # bytes the first task's step would process (dry run)
    last_bytes: int | None
    estimated_bytes: int | None  # the mean of the two, times the tasks
    estimated_cost_usd: float | None  # at price_per_tib, each step billed at least 10 MiB
    price_per_tib: float
    warning: str | None = None  # a step over maximum_bytes_billed: BigQuery would refuse it
    error: str | None = None  # why it could not be estimated


class PoolSnapshot(NamedTuple):
    """A concurrency pool: its configured size and the slots it has now (fewer while throttled)."""

    name: str
    size: int
    effective_slots: int


class ProcessorProgress(NamedTuple):
    """One processor's part of a run: its code version, progress, skipped tasks by reason, and
    what its warehouse jobs cost (None where no task reported a cost, or not asked)."""

    name: str
    version: str | None
    progress: Progress
    skipped: dict[str, int] = {}
    cost: Cost | None = None


class Owner(NamedTuple):
    """Who executes a run: the controller's host and PID."""

    host: str | None
    pid: int | None


class CheckSummary(NamedTuple):
    """The newest result of each check evaluated in a run."""

    passed: int = 0
    failed: int = 0
    failing: list[str] = []


class WorkerSnapshot(NamedTuple):
    """A process that works on a run: its controller, or a ``runbook worker`` on any machine."""

    id: str
    kind: str  # controller or worker
    host: str
    pid: int
    alive: bool
    tasks_done: int  # in this run
    running: int  # tasks of this run it runs now
    heartbeat_at: str | None
    stopped_at: str | None
    note: str | None


class AdoptedSnapshot(NamedTuple):
    """The process an adopted run follows (``runbook adopt``): started outside runbook, its
    liveness from its PID, its progress from its log."""

    pid: int
    log_path: str  # the log followed
    pattern: str  # picks the date out of a line
    date_format: str
    reached: str | None  # the highest date of the run's range seen in the log so far
    process_started_at: str | None
    following: bool  # still followed (false once `runbook resume` took the run over)
    process_alive: bool | None  # its PID (null once not following, or on another host)
    watcher_alive: bool | None  # the watcher that records its progress (null once not following)


class RunSnapshot(NamedTuple):
    """One run, as status, history, show, the handoff, the dashboard and MCP all show it."""

    id: int
    status: str  # effective: an active run whose controller is gone is "interrupted"
    stored_status: str
    processors: list[str]
    start_date: str
    end_date: str
    alive: bool | None
    owner: Owner
    workers: int
    log_path: str | None
    progress: Progress
    per_processor: list[ProcessorProgress]
    tasks_per_hour: float | None
    eta_seconds: int | None
    eta_at: str | None
    created_at: str | None
    started_at: str | None
    heartbeat_at: str | None
    finished_at: str | None
    wall_seconds: float | None
    session_id: int | None
    versions: dict[str, str]
    command_line: str | None
    error: str | None
    checks: CheckSummary
    epoch: int  # the owner's fencing token; grows each time the run is taken
    processes: list[WorkerSnapshot]  # its controller and the workers that helped it
    commands: dict[str, str]
    origin: str = "run"  # "run", or "adopted" (a process started outside runbook, followed)
    adopted: AdoptedSnapshot | None = None
    resume_after: str | None = None  # a daily quota interrupted it: resume from then on
    cost: Cost | None = None  # its warehouse jobs (history, show, the handoff)


class DateRange(NamedTuple):
    start: str
    end: str
    dates: int


class TaskSnapshot(NamedTuple):
    id: int
    processor: str
    date: str
    end_date: str
    status: str
    attempt: int
    max_attempts: int
    skip_reason: str | None
    code_version: str | None
    exit_code: int | None
    rows_affected: int | None
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    error_tail: str | None
    worker: str | None  # the process that ran (or runs) it: a process id of the run
    run_id: int | None = None
    job_id: str | None = None  # the warehouse job of its attempt (BigQuery)
    bytes_processed: int | None = None
    bytes_billed: int | None = None
    slot_ms: int | None = None


class FailureGroup(NamedTuple):
    """Dates of one processor that failed with the same error (its summary line)."""

    processor: str
    error: str
    tasks: int
    ranges: list[DateRange]
    runs: list[int]
    attempts: int
    exit_code: int | None
    error_tail: str  # of the newest failed task of the group


class BlockedGroup(NamedTuple):
    """Dates of one processor blocked by a failed upstream or a failing gate, and why."""

    processor: str
    reason: str
    tasks: int
    ranges: list[DateRange]


class EventSnapshot(NamedTuple):
    id: int
    at: str | None
    kind: str
    run_id: int | None
    processor: str | None
    date: str | None
    message: str
    data: dict[str, Any]


class ConditionSnapshot(NamedTuple):
    """One ``expect:`` condition: its text, both sides' values, and the verdict."""

    expr: str
    value: Any
    op: str | None
    threshold: Any
    passed: bool
    parts: "list[ConditionSnapshot] | None" = None


class CheckSnapshot(NamedTuple):
    """One evaluation of one check (validate, show, checks history, the handoff: one shape)."""

    id: int
    run_id: int | None
    processor: str
    check: str
    description: str
    severity: str
    passed: bool
    start_date: str
    end_date: str
    metrics: dict[str, Any]
    conditions: list[ConditionSnapshot]
    error: str | None
    query: str
    filled_query: str  # the query with its parameters written in, ready to paste
    params: dict[str, Any]
    at: str | None
    per_date: bool = False  # judged date by date: metrics count the dates, failed_dates names them
    failed_dates: list[dict[str, Any]] = []  # ranges {start, end, dates, failed, errors, values, text}
    samples: list[dict[str, Any]] = []  # sample rows of a failure {date, rows, more, error}
    changed_dates: list[dict[str, Any]] = []  # stable: {date, metric, before, after, change}


class RunDetail(NamedTuple):
    """``runbook show``: a run, its failures grouped by error, blocked dates, checks and events."""

    run: RunSnapshot
    failures: list[FailureGroup]
    blocked: list[BlockedGroup]
    checks: list[CheckSnapshot]
    events: list[EventSnapshot]
    tasks: list[TaskSnapshot] | None


class NoteSnapshot(NamedTuple):
    id: int
    kind: str
    text: str
    at: str | None
    session_id: int | None


class SessionSnapshot(NamedTuple):
    id: int
    title: str
    started_at: str | None
    ended_at: str | None
    open: bool
    handoff_path: str | None


# -- coverage (runbook coverage PROCESSOR) ------------------------------------------------------


class CoverageSummary(NamedTuple):
    calendar_dates: int
    expected: int
    built: int
    current: int
    stale: int
    gaps: int
    failed: int
    blocked: int
    percent: float | None
    calendar_skips: dict[str, int]
    gap_reasons: dict[str, int]


class StaleRange(NamedTuple):
    start: str
    end: str
    dates: int
    code_versions: list[str]


class CheckRange(NamedTuple):
    check: str
    start: str
    end: str
    dates: int


class DayCheck(NamedTuple):
    check: str
    passed: bool
    run_id: int | None
    at: str | None


class DateState(NamedTuple):
    date: str
    expected: bool
    calendar_skip: str | None
    built: bool
    stale: bool
    run_id: int | None
    built_at: str | None
    code_version: str | None
    rows_affected: int | None
    last_attempt: str | None
    skip_reason: str | None
    checks: list[DayCheck] = []


class CoverageSnapshot(NamedTuple):
    """``runbook coverage PROCESSOR``: the summary, gaps, stale and failing ranges, every date."""

    processor: str
    start: str
    end: str
    code_version: str | None
    summary: CoverageSummary
    gaps: list[DateRange]
    stale: list[StaleRange]
    failing_checks: list[CheckRange]
    commands: dict[str, str | None]
    dates: list[DateState]
