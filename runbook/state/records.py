"""The rows of the state store as runbook reads them back: plain, light dataclasses.

The SQLModel classes in :mod:`runbook.state.models` define the schema (and its migrations); what
the queries return are these records, built straight from DBAPI rows so that reading needs
neither SQLAlchemy nor an ORM session. Times are UTC datetimes, JSON columns are Python values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runbook.formatting import as_utc

R = TypeVar("R")


@dataclass(slots=True)
class Run:
    """One invocation of the controller over processors and a date range."""

    id: int
    status: str
    processors: list[str]
    start_date: str
    end_date: str
    options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    pid: int | None = None
    host: str | None = None
    controller_id: str | None = None
    epoch: int = 0
    log_path: str | None = None
    command_line: str | None = None
    config_path: str | None = None
    session_id: int | None = None
    error: str | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    stop_requested_at: dt.datetime | None = None
    origin: str = "run"  # "run", or "adopted" (runbook adopt)
    resume_after: dt.datetime | None = None  # a daily quota interrupted it: resume from then on


@dataclass(slots=True)
class Task:
    """One step of one processor over one date (or a chunk of dates) within a run."""

    id: int
    run_id: int
    processor: str
    date: str
    end_date: str
    seq: int = 0
    status: str = "pending"
    waits: int = 0
    pool: str | None = None
    attempt: int = 0
    max_attempts: int = 1
    skip_reason: str | None = None
    code_version: str | None = None
    claimed_by: str | None = None
    lease_until: dt.datetime | None = None
    not_before: dt.datetime | None = None
    pid: int | None = None
    exit_code: int | None = None
    rows_affected: int | None = None
    error_tail: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_seconds: float | None = None
    job_id: str | None = None  # the warehouse job of the current attempt
    bytes_processed: int | None = None
    bytes_billed: int | None = None
    slot_ms: int | None = None


@dataclass(slots=True)
class Event:
    """The timeline: run started, date failed, retried, interrupted, resumed, check failed, ..."""

    id: int
    run_id: int | None
    at: dt.datetime | None
    kind: str
    processor: str | None = None
    date: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CheckResult:
    """One evaluation of one validation check: every metric, every condition, the query that ran."""

    id: int
    run_id: int | None
    processor: str
    check_name: str
    severity: str
    passed: bool
    start_date: str
    end_date: str
    metrics: dict[str, Any] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    query: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    at: dt.datetime | None = None
    per_date: bool = False
    failed_dates: list[dict[str, Any]] | None = None  # per date: the failed dates as ranges
    samples: list[dict[str, Any]] | None = None  # sample rows of a failure (per failed date)
    changed_dates: list[dict[str, Any]] | None = None  # stable: metrics a rebuild changed


@dataclass(slots=True)
class CheckDate:
    """One date judged by a ``per_date`` check."""

    id: int
    result_id: int
    run_id: int | None
    processor: str
    check_name: str
    date: str
    passed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    at: dt.datetime | None = None


@dataclass(slots=True)
class WorkSession:
    """A numbered working session (the seeds' "Session 52"); its end writes a handoff."""

    id: int
    title: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None = None
    handoff_path: str | None = None


@dataclass(slots=True)
class Gate:
    """The checks of one processor in one run."""

    id: int
    run_id: int
    processor: str
    blocking: bool
    status: str
    waits: int = 0
    claimed_by: str | None = None
    lease_until: dt.datetime | None = None
    message: str | None = None
    finished_at: dt.datetime | None = None
    start_date: str = ""  # a per-date gate's window; empty: the whole run
    end_date: str = ""

    @property
    def per_date(self) -> bool:
        return bool(self.start_date)


@dataclass(slots=True)
class Worker:
    """A process that claims tasks (a controller, or ``runbook worker``)."""

    id: str
    host: str
    pid: int
    kind: str
    run_id: int | None
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None = None
    stopped_at: dt.datetime | None = None
    tasks_done: int = 0
    note: str | None = None


@dataclass(slots=True)
class Notification:
    """One delivery of one event of a run to one ``notify:`` target (the URL is never stored)."""

    id: int
    key: str
    run_id: int | None
    event: str
    target: str
    status: str = "pending"
    attempts: int = 0
    claimed_by: str | None = None
    lease_until: dt.datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: dt.datetime | None = None
    sent_at: dt.datetime | None = None


@dataclass(slots=True)
class Note:
    """Something a person or agent learned: a fix, an issue, a decision, a next step."""

    id: int
    session_id: int | None
    kind: str
    text: str
    at: dt.datetime | None = None


def columns(record: type) -> list[str]:
    """The record's fields, which are its table's columns in order."""
    return [f.name for f in dataclasses.fields(record)]


_TIMES = {
    "created_at",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "lease_until",
    "not_before",
    "at",
    "ended_at",
    "sent_at",
    "resume_after",
}
_JSON = {
    "processors", "options", "versions", "data", "metrics", "conditions", "params", "payload",
    "failed_dates", "samples", "changed_dates",
}  # fmt: skip


def _converters(record: type) -> list[Any]:
    found: list[Any] = []
    for name in columns(record):
        if name in _TIMES:
            found.append(as_utc)
        elif name in _JSON:
            found.append(_json)
        elif name in ("passed", "blocking", "per_date"):
            found.append(bool)
        else:
            found.append(None)
    return found


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


_CACHE: dict[type, list[Any]] = {}


def from_rows(record: type[R], rows: Sequence[Sequence[Any]]) -> list[R]:
    """Records from DBAPI rows holding the record's columns in order (see :func:`columns`)."""
    converters = _CACHE.get(record)
    if converters is None:
        converters = _CACHE[record] = _converters(record)
    pairs = [(i, c) for i, c in enumerate(converters) if c is not None]
    found = []
    for row in rows:
        values = list(row)
        for index, convert in pairs:
            if values[index] is not None:
                values[index] = convert(values[index])
        found.append(record(*values))
    return found
