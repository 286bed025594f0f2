"""The vocabulary of runbook's state: statuses, skip reasons, note kinds, severities.

Every value is a :class:`~enum.StrEnum`, so it is stored, printed and compared as the plain string
it names (``TaskStatus.SUCCEEDED == "succeeded"``). This module imports nothing heavy and is safe to
use anywhere, from the state store up to the CLI.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


class RunOrigin(StrEnum):
    """How a run came to be recorded: planned and run by runbook, or a process started outside it
    and adopted (``runbook adopt``)."""

    RUN = "run"
    ADOPTED = "adopted"


class NotifyEvent(StrEnum):
    """What a ``notify:`` webhook can be sent for (docs/json-notify.md)."""

    FINISHED = "finished"  # the run succeeded
    FAILED = "failed"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"
    STALLED = "stalled"  # no task started or finished for the target's ``stalled_after``
    THROTTLED = "throttled"  # the warehouse slowed the run down (a pool's effective size went down)


class SkipReason(StrEnum):
    """Why a date of a processor is not run: every date of a range is run or has one of these."""

    OFF_DAY = "off_day"
    BOOTSTRAP = "bootstrap"
    ALREADY_DONE = "already_done"
    UPSTREAM_SKIPPED = "upstream_skipped"
    UPSTREAM_MISSING = "upstream_missing"
    NOT_A_GAP = "not_a_gap"
    NOT_STALE = "not_stale"


class NoteKind(StrEnum):
    FIX = "fix"
    ISSUE = "issue"
    DECISION = "decision"
    NEXT = "next"


class Severity(StrEnum):
    BLOCK = "block"
    WARN = "warn"


# The kinds of process that work on a run (the worker table): its controller, `runbook worker`
# helpers, and the watcher that follows an adopted process.
CONTROLLER, WORKER, WATCHER = "controller", "worker", "watcher"

ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.BLOCKED, RunStatus.CANCELLED)
# Tasks that a step attempt has finished (their rate is the run's rate).
STEP_FINISHED = (TaskStatus.SUCCEEDED, TaskStatus.FAILED)
FINISHED_TASK_STATUSES = (
    TaskStatus.SUCCEEDED,
    TaskStatus.FAILED,
    TaskStatus.SKIPPED,
    TaskStatus.BLOCKED,
    TaskStatus.CANCELLED,
)
# Skip reasons that say a run chose not to redo a date, not why it could not be built.
SELECTION_SKIPS = (SkipReason.ALREADY_DONE, SkipReason.NOT_A_GAP, SkipReason.NOT_STALE)
CALENDAR_SKIPS = (SkipReason.OFF_DAY, SkipReason.BOOTSTRAP)


class ProcessorStatus(StrEnum):
    """A processor across the workspace's range (the handoff's status tables), first that applies."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    BLOCKED = "blocked"
    FAILED = "failed"
    COMPLETE = "complete"
    PARTIAL = "partial"
    NOT_STARTED = "not_started"


class OverallStatus(StrEnum):
    """The whole workspace in one word (the handoff's headline), first that applies."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    BLOCKED = "blocked"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"
    IDLE = "idle"


class CellState(StrEnum):
    """One processor on one date in the heat map, first that applies; a date that is none of these
    shows the reason it was skipped (a :class:`SkipReason`)."""

    RUNNING = "running"  # a live run's task covering it runs now
    QUEUED = "queued"  # a live run will run it
    FAILED = "failed"  # its newest attempt failed
    BLOCKED = "blocked"  # its newest attempt was blocked
    STALE = "stale"  # built, by another code version than the current one
    SUCCEEDED = "succeeded"  # built by the current code version
    NEVER_BUILT = "never_built"  # expected, and no run built it
