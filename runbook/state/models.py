"""The schema of the state store: every table, in one module, for Alembic and its migrations.

Nothing reads or writes through these classes at run time: the queries are plain SQL
(``queries.py``, ``store.py``) returning the records of ``records.py``. A test checks that Alembic
autogenerate finds no difference between these tables and the shipped migrations.

Dates of a task are stored as ISO strings (``YYYY-MM-DD``) so that range comparisons are plain
string comparisons that use the indexes on SQLite and PostgreSQL alike. Times are timezone-aware
UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Text, false
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: runbook stores UTC times only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


def _when(**kwargs: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kwargs), default=None)


class RunTable(SQLModel, table=True):
    """One invocation of the controller over processors and a date range."""

    __tablename__ = "run"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default="queued", max_length=16, index=True)
    processors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    start_date: str = Field(max_length=10)
    end_date: str = Field(max_length=10)
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    versions: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    workers: int = 1
    pid: int | None = None
    host: str | None = Field(default=None, max_length=255)
    controller_id: str | None = Field(default=None, max_length=64)
    # The fencing token: taking a run adds one, and every write of its owner is conditional on it.
    epoch: int = 0
    # "run" (planned and run by runbook) or "adopted" (a process started outside it, followed).
    origin: str = Field(default="run", max_length=16)
    log_path: str | None = Field(default=None, sa_column=Column(Text))
    command_line: str | None = Field(default=None, sa_column=Column(Text))
    config_path: str | None = Field(default=None, sa_column=Column(Text))
    session_id: int | None = Field(default=None, foreign_key="work_session.id", index=True)
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: dt.datetime | None = _when(nullable=False)
    started_at: dt.datetime | None = _when()
    heartbeat_at: dt.datetime | None = _when()
    finished_at: dt.datetime | None = _when()
    stop_requested_at: dt.datetime | None = _when()
    # A daily warehouse quota interrupted the run: `runbook resume` waits until then (or --force).
    resume_after: dt.datetime | None = _when()


class TaskTable(SQLModel, table=True):
    """One step of one processor over one date (or a chunk of dates) within a run."""

    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_run_status", "run_id", "status"),
        Index("ix_task_processor_date", "processor", "date", "status"),
        Index("ix_task_status_lease", "status", "lease_until"),
        # Ready tasks of a run in order: what workers claim.
        Index("ix_task_ready", "run_id", "status", "waits", "seq"),
        # A processor's dates in a run: how a run's links are recorded.
        Index("ix_task_run_processor_date", "run_id", "processor", "date"),
        # Covers the per-run reads of status, history, show and the handoff: counts by processor,
        # status and skip reason, step windows, rows and the worker that ran each step. Its columns change when the status does,
        # so keeping it costs the writes next to nothing.
        Index(
            "ix_task_run_outcome",
            "run_id",
            "processor",
            "status",
            "skip_reason",
            "started_at",
            "finished_at",
            "rows_affected",
            "claimed_by",
        ),  # fmt: skip
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    processor: str = Field(max_length=128)
    date: str = Field(max_length=10)
    end_date: str = Field(max_length=10)
    seq: int = 0
    status: str = Field(default="pending", max_length=16)
    # Unsettled dependencies (upstream tasks and blocking gates); a pending task is ready at 0.
    waits: int = 0
    pool: str | None = Field(default=None, max_length=64)
    attempt: int = 0
    max_attempts: int = 1
    skip_reason: str | None = Field(default=None, max_length=32)
    code_version: str | None = Field(default=None, max_length=128)
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: dt.datetime | None = _when()
    not_before: dt.datetime | None = _when()
    pid: int | None = None
    exit_code: int | None = None
    rows_affected: int | None = None
    error_tail: str | None = Field(default=None, sa_column=Column(Text))
    started_at: dt.datetime | None = _when()
    finished_at: dt.datetime | None = _when()
    duration_seconds: float | None = None
    # The warehouse job of the current attempt (stored before it is submitted) and what it cost.
    job_id: str | None = Field(default=None, max_length=255)
    bytes_processed: int | None = Field(default=None, sa_column=Column(BigInteger))
    bytes_billed: int | None = Field(default=None, sa_column=Column(BigInteger))
    slot_ms: int | None = Field(default=None, sa_column=Column(BigInteger))


class TaskLatestTable(SQLModel, table=True):
    """For each processor and first date, the newest task of each outcome: a projection of ``task``.

    Coverage, the handoff's status tables and the heat map read what state each date is in from
    here (one indexed range per processor) instead of searching every rerun of every date. The
    store keeps it current in the same transaction as each outcome it records
    (``runbook.state.latest``).
    """

    __tablename__ = "task_latest"

    processor: str = Field(max_length=128, primary_key=True)
    date: str = Field(max_length=10, primary_key=True)
    # the newest succeeded task
    built_id: int | None = None
    built_run_id: int | None = None
    built_end_date: str | None = Field(default=None, max_length=10)
    built_version: str | None = Field(default=None, max_length=128)
    built_rows: int | None = None
    built_at: dt.datetime | None = _when()
    # the newest succeeded, failed or blocked task
    attempt_id: int | None = None
    attempt_run_id: int | None = None
    attempt_end_date: str | None = Field(default=None, max_length=10)
    attempt_status: str | None = Field(default=None, max_length=16)
    attempt_tries: int | None = None
    attempt_exit_code: int | None = None
    # the newest skipped task
    skipped_id: int | None = None
    skipped_run_id: int | None = None
    skipped_end_date: str | None = Field(default=None, max_length=10)
    skip_reason: str | None = Field(default=None, max_length=32)


class TaskDepTable(SQLModel, table=True):
    """A task waits for an upstream task (a date of an upstream processor, or its own previous
    date with ``depends_on_past``)."""

    __tablename__ = "task_dep"
    __table_args__ = (Index("ix_task_dep_task", "task_id"),)

    upstream_id: int = Field(foreign_key="task.id", primary_key=True)
    task_id: int = Field(foreign_key="task.id", primary_key=True)


class GateTable(SQLModel, table=True):
    """The checks of one processor in one run, run once its tasks are finished; a blocking gate
    holds its downstream until they pass."""

    __tablename__ = "gate"
    __table_args__ = (Index("ix_gate_run_processor", "run_id", "processor", "start_date", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    processor: str = Field(max_length=128)
    blocking: bool = False
    status: str = Field(default="pending", max_length=16)
    waits: int = 0  # the processor's tasks not finished yet
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: dt.datetime | None = _when()
    message: str | None = Field(default=None, sa_column=Column(Text))
    finished_at: dt.datetime | None = _when()
    # The window of dates of a per-date gate; empty: the processor's checks over the whole run.
    start_date: str = Field(default="", max_length=10, sa_column_kwargs={"server_default": ""})
    end_date: str = Field(default="", max_length=10, sa_column_kwargs={"server_default": ""})


class GateDepTable(SQLModel, table=True):
    """A task waits for a blocking gate of an upstream processor."""

    __tablename__ = "gate_dep"

    gate_id: int = Field(foreign_key="gate.id", primary_key=True)
    task_id: int = Field(foreign_key="task.id", primary_key=True)


class WorkerTable(SQLModel, table=True):
    """A process that claims tasks: a run's controller, or a ``runbook worker`` on any machine."""

    __tablename__ = "worker"

    id: str = Field(max_length=64, primary_key=True)
    host: str = Field(max_length=255)
    pid: int
    kind: str = Field(default="worker", max_length=16)  # controller or worker
    run_id: int | None = Field(default=None, foreign_key="run.id")  # None: every active run
    started_at: dt.datetime | None = _when(nullable=False)
    heartbeat_at: dt.datetime | None = _when()
    stopped_at: dt.datetime | None = _when()
    tasks_done: int = 0
    note: str | None = Field(default=None, sa_column=Column(Text))


class PoolTable(SQLModel, table=True):
    """A concurrency pool shared by every process: its configured size and its effective size."""

    __tablename__ = "pool"

    name: str = Field(max_length=64, primary_key=True)
    size: int
    effective_size: int
    updated_at: dt.datetime | None = _when()


class EventTable(SQLModel, table=True):
    """The timeline: run started, date failed, retried, interrupted, resumed, check failed, ..."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_run_at", "run_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    at: dt.datetime | None = _when(nullable=False, index=True)
    kind: str = Field(max_length=32)
    processor: str | None = Field(default=None, max_length=128)
    date: str | None = Field(default=None, max_length=10)
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class NotificationTable(SQLModel, table=True):
    """One webhook delivery of one event of a run to one ``notify:`` target (an outbox row).

    Inserting the row is the claim: ``key`` is unique (run, event, occurrence, target), so of
    every process that notices the same event exactly one sends it. The holder keeps it by lease;
    a holder that died leaves it to any watcher once the lease runs out. The URL is never stored:
    ``target`` names the entry of runbook.yaml (``notify.0``).
    """

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_status_lease", "status", "lease_until"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=255, unique=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    event: str = Field(max_length=16)
    target: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending, sent, failed
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: dt.datetime | None = _when()
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: dt.datetime | None = _when(nullable=False)
    sent_at: dt.datetime | None = _when()


class CheckResultTable(SQLModel, table=True):
    """One evaluation of one validation check: every metric, every condition, the query that ran."""

    __tablename__ = "check_result"
    __table_args__ = (Index("ix_check_result_name_at", "processor", "check_name", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    processor: str = Field(max_length=128)
    check_name: str = Field(max_length=128)
    severity: str = Field(max_length=8)
    passed: bool
    start_date: str = Field(max_length=10)
    end_date: str = Field(max_length=10)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    conditions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    query: str = Field(default="", sa_column=Column(Text, nullable=False))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))
    at: dt.datetime | None = _when(nullable=False)
    per_date: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    failed_dates: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    samples: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    changed_dates: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))


class CheckDateTable(SQLModel, table=True):
    """One date judged by a ``per_date`` check: its metrics and conditions (baselines and the
    before/after of a rebuild read them)."""

    __tablename__ = "check_date"
    __table_args__ = (Index("ix_check_date_check_date", "processor", "check_name", "date"),)

    id: int | None = Field(default=None, primary_key=True)
    result_id: int = Field(foreign_key="check_result.id", index=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    processor: str = Field(max_length=128)
    check_name: str = Field(max_length=128)
    date: str = Field(max_length=10)
    passed: bool
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    conditions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))
    at: dt.datetime | None = _when(nullable=False)


class WorkSessionTable(SQLModel, table=True):
    """A numbered working session (the seeds' "Session 52"); its end writes a handoff."""

    __tablename__ = "work_session"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    started_at: dt.datetime | None = _when(nullable=False)
    ended_at: dt.datetime | None = _when()
    handoff_path: str | None = Field(default=None, sa_column=Column(Text))


class NoteTable(SQLModel, table=True):
    """Something a person or agent learned: a fix, an issue, a decision, a next step."""

    __tablename__ = "note"

    id: int | None = Field(default=None, primary_key=True)
    session_id: int | None = Field(default=None, foreign_key="work_session.id", index=True)
    kind: str = Field(default="issue", max_length=16)
    text: str = Field(sa_column=Column(Text, nullable=False))
    at: dt.datetime | None = _when(nullable=False)
