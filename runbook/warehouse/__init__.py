"""The warehouse seam: one Protocol, two adapters (DuckDB locally, BigQuery for real).

The controller and the checks talk to a :class:`Warehouse` and never to a driver. SQL is written
in BigQuery's dialect; the DuckDB adapter translates it (:mod:`runbook.warehouse.dialect`).
Parameters (``@start``) are always bound by the driver, never pasted into the SQL text.

Only the adapter modules import ``duckdb`` or ``google.cloud.bigquery``, and
:func:`open_warehouse` imports the one it needs when it is called, so ``import runbook.warehouse``
stays cheap and works without either driver installed.

Every driver error surfaces as :class:`~runbook.errors.WarehouseError` naming the query and the
cause; rate limits and 5xx answers as :class:`~runbook.errors.TransientWarehouseError`, which the
adapters retry with jittered exponential backoff (:func:`call_with_retries`) until a deadline;
a daily quota used up as :class:`~runbook.errors.QuotaExhausted` (with the time it resets).

A SQL step runs through :meth:`Warehouse.run_job` with a :class:`JobSpec`: a deterministic job id
(:func:`job_id_for`), labels, what to re-attach to, and how to report throttling; it answers a
:class:`JobResult` with what the step cost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from runbook.config import WarehouseConfig
from runbook.errors import TransientWarehouseError

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "QUOTA_RESET_VARIABLE",
    "JobResult",
    "JobSpec",
    "Warehouse",
    "call_with_retries",
    "job_id_for",
    "job_labels",
    "quota_reset_after",
    "open_warehouse",
    "plain_value",
    "to_date",
]

MAX_BACKOFF_SECONDS = 60.0
# For tests only: when set (an ISO timestamp), the time a daily quota resets.
QUOTA_RESET_VARIABLE = "RUNBOOK_QUOTA_RESET_AT"
QUOTA_TIMEZONE = "America/Los_Angeles"  # BigQuery's daily quotas reset at midnight Pacific time
_LABEL_CHARS = re.compile(r"[^a-z0-9_-]")
_T = TypeVar("_T")


@dataclass
class JobSpec:
    """How one attempt of a SQL step runs as warehouse jobs.

    ``job_id`` is the attempt's job id (statement ``i`` of a script runs as ``job_id`` when ``i``
    is 0, else ``{job_id}_s{i}``; a job that failed for a transient reason is run again as
    ``{id}_x{n}``). With ``attach`` the id was stored by an earlier holder of the task: each job
    is looked up before anything is submitted, a running one is waited for, a successful one is
    taken as done, and only one that never existed (or failed) is submitted. ``stop`` asks for
    the running job to be cancelled (``runbook stop``, or the step's ``timeout``); ``abandon`` to
    stop waiting and leave it running (the task was taken over: its new holder re-attaches).
    ``on_throttle`` hears each rate limit (its reason) before the backoff. ``timeout`` (seconds)
    is also given to the warehouse, where it has a limit of its own for a job (BigQuery's
    ``jobTimeoutMs``), so that a job outlives its step by no more than that.
    """

    job_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    attach: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    abandon: threading.Event = field(default_factory=threading.Event)
    on_throttle: Callable[[str], None] = lambda reason: None
    timeout: float | None = None


@dataclass
class JobResult:
    """What a SQL step did and cost: rows affected by its last DML, bytes processed and billed,
    slot milliseconds (None where the warehouse does not say), the jobs that ran it, whether an
    earlier holder's job was re-attached to, and the job cancelled by a stop (if any)."""

    rows_affected: int | None = None
    bytes_processed: int | None = None
    bytes_billed: int | None = None
    slot_ms: int | None = None
    job_ids: list[str] = field(default_factory=list)
    reattached: list[str] = field(default_factory=list)
    cancelled: str | None = None
    abandoned: bool = False  # the wait was given up (the task was taken over); the job runs on

    def add_cost(self, processed: int | None, billed: int | None, slot_ms: int | None) -> None:
        if processed is not None:
            self.bytes_processed = (self.bytes_processed or 0) + processed
        if billed is not None:
            self.bytes_billed = (self.bytes_billed or 0) + billed
        if slot_ms is not None:
            self.slot_ms = (self.slot_ms or 0) + slot_ms


def job_id_for(prefix: str, run_id: int, task_id: int, attempt: int, run_token: str = "") -> str:
    """The job id of one attempt of a task: ``{prefix}_r{run}_t{task}_a{attempt}_{hash}``.

    Deterministic (the same attempt always gets the same id, whatever its SQL), so that a process
    that takes the task over finds the job. The short hash is of the parts and of ``run_token``
    (when the run was created): a state store made anew numbers its runs from 1 again, and its
    run 1 must not meet the jobs of an earlier run 1 (BigQuery keeps jobs for six months).
    """
    digest = hashlib.sha256(f"{prefix}:{run_id}:{task_id}:{attempt}:{run_token}".encode()).hexdigest()[:8]
    return f"{prefix}_r{run_id}_t{task_id}_a{attempt}_{digest}"


def job_labels(**values: Any) -> dict[str, str]:
    """BigQuery labels (lowercase letters, digits, ``_`` and ``-``, at most 63 characters)."""
    return {key: _LABEL_CHARS.sub("_", str(value).lower())[:63] for key, value in values.items()}


def quota_reset_after(now: dt.datetime, environ: Mapping[str, str] | None = None) -> dt.datetime:
    """When a daily quota used up at ``now`` resets: the next midnight in Pacific time (UTC).

    ``RUNBOOK_QUOTA_RESET_AT`` (an ISO timestamp; UTC when it has no offset) replaces it, for tests.
    """
    override = (environ if environ is not None else os.environ).get(QUOTA_RESET_VARIABLE)
    if override:
        when = dt.datetime.fromisoformat(override)
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    from zoneinfo import ZoneInfo

    pacific = now.astimezone(ZoneInfo(QUOTA_TIMEZONE))
    midnight = dt.datetime.combine(pacific.date() + dt.timedelta(days=1), dt.time(), tzinfo=pacific.tzinfo)
    return midnight.astimezone(dt.UTC)


@runtime_checkable
class Warehouse(Protocol):
    """What runbook needs from a warehouse: queries, DML/DDL scripts and bulk inserts."""

    kind: str

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run BigQuery-dialect SQL and return the rows of its last statement as dicts."""
        ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int | None:
        """Run a DML/DDL script (statements separated by ``;``); rows affected by its last DML."""
        ...

    def load_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to the existing ``table``; keys are column names."""
        ...

    def run_job(self, sql: str, params: Mapping[str, Any], spec: JobSpec) -> JobResult:
        """Run a SQL step's script as ``spec`` says (crash-safe job ids, cost recorded)."""
        ...

    def estimate(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Bytes the script would process (a dry run), or None when the warehouse cannot say."""
        ...

    def close(self) -> None:
        """Release the connection; further calls raise WarehouseError."""
        ...


def open_warehouse(config: WarehouseConfig, root: Path, environ: Mapping[str, str]) -> Warehouse:
    """Open the warehouse ``config`` describes.

    A relative DuckDB ``path`` is taken from the workspace ``root``. For BigQuery,
    ``credentials_env`` names the variable in ``environ`` that holds a credentials file path.
    """
    if config.kind == "duckdb":
        from runbook.warehouse.duckdb import DuckDBWarehouse

        path = Path(config.path)
        return DuckDBWarehouse(path if path.is_absolute() else root / path, max_retries=config.max_retries)
    from runbook.warehouse.bigquery import BigQueryWarehouse

    return BigQueryWarehouse.from_config(config, environ)


def call_with_retries(
    call: Callable[[], _T],
    *,
    max_retries: int | None = None,
    base_seconds: float,
    deadline_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[TransientWarehouseError], None] = lambda exc: None,
) -> _T:
    """Return ``call()``, trying again after each TransientWarehouseError: up to ``max_retries``
    times, and (with ``deadline_seconds``) only while the deadline, counted from the first try,
    has not passed.

    The waits double from ``base_seconds`` (capped at :data:`MAX_BACKOFF_SECONDS`, and at what is
    left of the deadline), each shortened by a random part of up to half so that threads which
    collided do not collide again in step. ``on_retry`` hears each error before its wait. When the
    retries run out the last error is raised again, saying how many tries were made.
    """
    attempt = 0
    started = clock()
    while True:
        try:
            return call()
        except TransientWarehouseError as exc:
            wait = min(base_seconds * 2**attempt, MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)
            left = None if deadline_seconds is None else deadline_seconds - (clock() - started)
            if (max_retries is not None and attempt >= max_retries) or (left is not None and left <= 0):
                if attempt == 0:
                    raise
                raise TransientWarehouseError(
                    f"{exc.message} (gave up after {attempt + 1} tries)",
                    reason=exc.reason,
                    throttle=exc.throttle,
                ) from exc
            on_retry(exc)
            sleep(wait if left is None else min(wait, left))
            attempt += 1


def plain_value(value: Any) -> Any:
    """A driver's value as runbook hands it on: DECIMAL/NUMERIC as float, through lists and structs."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {key: plain_value(item) for key, item in value.items()}
    return value


def to_date(value: Any) -> dt.date | None:
    """A DATE, TIMESTAMP or ISO string from a warehouse row as a date (None stays None)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"{value!r} is not a date") from None
