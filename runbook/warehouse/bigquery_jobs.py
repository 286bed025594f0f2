"""BigQuery query jobs: the base of :class:`~runbook.warehouse.bigquery.BigQueryWarehouse` that
configures, submits, retries, waits for and cancels them.

A statement's job config binds its parameters as ``ScalarQueryParameter`` /
``ArrayQueryParameter`` (types inferred from the Python values) and carries the byte cap and labels.
Every call to BigQuery goes through :meth:`BigQueryJobs._retrying` (runbook's retries, with the
client library's own switched off by ``NO_RETRY``).

A retry never runs a statement twice: a failed ``jobs.insert`` is sent again under the same job id
(a 409 Conflict means the first one got through, and that job is used); a failed poll polls the
same job again; only a job that itself failed for a transient reason is run again, as a new job.

SQL steps (:meth:`BigQueryJobs.run_job`) run under deterministic job ids that the controller
stores on the task before the job is submitted, carry labels (run, processor, date), are waited
for by polling ``jobs.get`` (so that a stop can cancel them with ``jobs.cancel``), and report
bytes processed, bytes billed and slot milliseconds from the job's statistics.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from google.api_core import exceptions as api_errors
from google.cloud import bigquery

from runbook.errors import TransientWarehouseError, WarehouseError
from runbook.warehouse import MAX_BACKOFF_SECONDS, JobResult, JobSpec, call_with_retries
from runbook.warehouse.bigquery_errors import job_error, wrap_error
from runbook.warehouse.dialect import failure, parameter_names, split_statements

POLL_SECONDS = 0.5  # how often a step's job is looked at (up to POLL_MAX_SECONDS as it runs on)
POLL_MAX_SECONDS = 5.0
# The client documents retry=None as "no retries" but types the argument as Retry.
NO_RETRY: Any = None
_T = TypeVar("_T")


class BigQueryJobs:
    """The job side of :class:`~runbook.warehouse.bigquery.BigQueryWarehouse` (whose constructor
    sets the client and the settings declared here)."""

    client: bigquery.Client
    _maximum_bytes_billed: int | None
    _retry_base_seconds: float
    _retry_deadline: float
    _poll_seconds: float
    _sleep: Callable[[float], None]
    _clock: Callable[[], float]

    def run_job(self, sql: str, params: Mapping[str, Any], spec: JobSpec) -> JobResult:
        """Run a SQL step's script under ``spec``'s job ids (see :class:`~runbook.warehouse.JobSpec`).

        Returns early, with ``cancelled`` set, when a stop cancelled the running job; with nothing
        cancelled when the wait was abandoned (the task was taken over: the job keeps running).
        """
        result = JobResult()
        for index, statement in enumerate(split_statements(sql)):
            job_id = spec.job_id if index == 0 else f"{spec.job_id}_s{index}"
            job = self._step_job(statement, params, job_id, spec, result)
            if job is None:
                return result
            if job.num_dml_affected_rows is not None:
                result.rows_affected = job.num_dml_affected_rows
        return result

    def cancel_step(self, job_id: str) -> list[str]:
        """Cancel the unfinished jobs of a step attempt whose holder is gone (``job_id``, its
        statements ``_s{n}`` and their reruns ``_x{n}``); return the ids cancelled."""
        cancelled: list[str] = []
        index = 0
        while True:
            statement = job_id if index == 0 else f"{job_id}_s{index}"
            current, reruns, found = statement, 0, False
            while (
                job := self._retrying(functools.partial(self._lookup, current, f"job {current}"))
            ) is not None:
                found = True
                if job.state != "DONE":
                    self._retrying(functools.partial(self._cancel, job))
                    cancelled.append(current)
                reruns += 1
                current = f"{statement}_x{reruns}"
            if not found:
                return cancelled
            index += 1

    def _cancel(self, job: bigquery.QueryJob) -> None:
        try:
            self.client.cancel_job(job.job_id, location=job.location, retry=NO_RETRY)
        except Exception as exc:
            raise wrap_error(exc, f"jobs.cancel {job.job_id}") from exc

    def _config(
        self,
        sql: str,
        params: Mapping[str, Any],
        *,
        labels: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> bigquery.QueryJobConfig:
        names = parameter_names(sql)
        missing = sorted(names - params.keys())
        if missing:
            raise WarehouseError(
                failure(sql, "no value for parameter " + ", ".join(f"@{n}" for n in missing))
            )
        config = bigquery.QueryJobConfig(
            use_legacy_sql=False,
            query_parameters=[_parameter(name, params[name], sql) for name in sorted(names)],
            maximum_bytes_billed=self._maximum_bytes_billed,
            labels=dict(labels or {}),
        )
        if dry_run:
            config.dry_run = True
            config.use_query_cache = False
        return config

    def _step_job(
        self, sql: str, params: Mapping[str, Any], job_id: str, spec: JobSpec, result: JobResult
    ) -> bigquery.QueryJob | None:
        """One statement of a step, as one job (again as ``{job_id}_x{n}`` after a transient job
        failure): looked up first when re-attaching, else submitted; waited for; its cost added."""
        config = self._config(sql, params, labels=spec.labels)
        if spec.timeout:
            config.job_timeout_ms = max(int(spec.timeout * 1000), 1)

        def retried(exc: TransientWarehouseError) -> None:
            if exc.throttle:
                spec.on_throttle(exc.reason or "rate limit")

        try:
            return self._step_attempts(sql, config, job_id, spec, result, retried)
        except _Woken:
            if spec.stop.is_set():
                result.cancelled = ""  # stopped before a job ran: nothing to cancel
            else:
                result.abandoned = True
            return None

    def _step_attempts(
        self,
        sql: str,
        config: bigquery.QueryJobConfig,
        job_id: str,
        spec: JobSpec,
        result: JobResult,
        retried: Callable[[TransientWarehouseError], None],
    ) -> bigquery.QueryJob | None:
        started = self._clock()
        probing, failures, current = spec.attach, 0, job_id
        while True:
            job: bigquery.QueryJob | None = None
            if probing:
                job = self._retrying(functools.partial(self._lookup, current, sql), retried, spec.abandon)
                if job is not None and job.state == "DONE" and job.error_result is not None:
                    # The earlier holder's job failed: it wrote nothing; run it again as the next id.
                    failures += 1
                    current = f"{job_id}_x{failures}"
                    continue
                probing = False
                if job is not None:
                    _check_owner(job, spec, sql)
                    result.reattached.append(current)
            if job is None:
                job = self._retrying(
                    functools.partial(self._submit_wrapped, sql, config, current), retried, spec.abandon
                )
            result.job_ids.append(current)
            ended = self._wait(job, spec, sql, retried)
            result.add_cost(job.total_bytes_processed, job.total_bytes_billed, job.slot_millis)
            if ended == "cancelled":
                result.cancelled = current
                return None
            if ended == "abandoned":
                result.abandoned = True
                return None
            if job.error_result is None:
                return job
            error = job_error(job.error_result, sql)
            left = self._retry_deadline - (self._clock() - started)
            if not isinstance(error, TransientWarehouseError) or left <= 0:
                raise error
            retried(error)
            pause = min(self._retry_base_seconds * 2**failures, MAX_BACKOFF_SECONDS, left) * random.uniform(
                0.5, 1.0
            )
            if self._sleep is time.sleep:
                spec.abandon.wait(pause)
            else:
                self._sleep(pause)
            if spec.abandon.is_set():
                raise _Woken
            failures += 1
            current = f"{job_id}_x{failures}"

    def _lookup(self, job_id: str, sql: str) -> bigquery.QueryJob | None:
        try:
            job = self.client.get_job(job_id, retry=NO_RETRY)
        except api_errors.NotFound:
            return None
        except Exception as exc:
            raise wrap_error(exc, sql) from exc
        if not isinstance(job, bigquery.QueryJob):
            raise WarehouseError(failure(sql, f"job {job_id} exists and is not a query job"))
        return job

    def _wait(
        self,
        job: bigquery.QueryJob,
        spec: JobSpec,
        sql: str,
        retried: Callable[[TransientWarehouseError], None],
    ) -> str:
        """Poll the job until it is done ("done"), a stop cancelled it ("cancelled"), or the task
        was taken over ("abandoned")."""
        pause = self._poll_seconds

        def reload() -> None:
            try:
                job.reload(retry=NO_RETRY)
            except Exception as exc:
                raise wrap_error(exc, sql) from exc

        while job.state != "DONE":
            if spec.stop.is_set():
                self._retrying(functools.partial(self._cancel, job), on_retry=retried)
                return "cancelled"
            if spec.abandon.is_set():
                return "abandoned"
            spec.abandon.wait(pause)
            if spec.stop.is_set() or spec.abandon.is_set():
                continue
            pause = min(pause * 1.5, POLL_MAX_SECONDS)
            self._retrying(reload, on_retry=retried)
        return "done"

    def _submit_wrapped(self, sql: str, config: bigquery.QueryJobConfig, job_id: str) -> bigquery.QueryJob:
        try:
            return self._submit(sql, config, job_id)
        except Exception as exc:
            raise wrap_error(exc, sql) from exc

    def _submit(self, sql: str, config: bigquery.QueryJobConfig, job_id: str) -> bigquery.QueryJob:
        try:
            return self.client.query(
                sql, job_config=config, job_id=job_id, retry=NO_RETRY, job_retry=NO_RETRY
            )
        except api_errors.Conflict:
            # An earlier try of this jobs.insert reached BigQuery: follow that job, don't start another.
            job = self.client.get_job(job_id, retry=NO_RETRY)
            if not isinstance(job, bigquery.QueryJob):
                raise WarehouseError(failure(sql, f"job {job_id} exists and is not a query job")) from None
            return job

    def _retrying(
        self,
        attempt: Callable[[], _T],
        on_retry: Callable[[TransientWarehouseError], None] = lambda exc: None,
        wake: threading.Event | None = None,
    ) -> _T:
        """``attempt()`` retried until the deadline; with ``wake``, a wait ends early when it is set
        (a stop or a takeover: the attempt then raises :class:`_Woken` rather than go on)."""
        sleep = self._sleep
        if wake is not None:
            if sleep is time.sleep:  # tests pass a fake sleep: keep it

                def sleep(seconds: float) -> None:
                    wake.wait(seconds)

            def guarded() -> _T:
                if wake.is_set():
                    raise _Woken
                return attempt()

            call = guarded
        else:
            call = attempt
        return call_with_retries(
            call, base_seconds=self._retry_base_seconds, deadline_seconds=self._retry_deadline,
            sleep=sleep, clock=self._clock, on_retry=on_retry,
        )  # fmt: skip


class _Woken(Exception):  # noqa: N818 - a condition, not an error
    """A step's backoff was cut short by a stop or a takeover: nothing more is sent."""


def _check_owner(job: bigquery.QueryJob, spec: JobSpec, sql: str) -> None:
    """A job found under a step's id must be that step's (its labels say whose it is)."""
    theirs = {key: job.labels.get(key) for key in spec.labels} if job.labels else {}
    if theirs and theirs != dict(spec.labels):
        raise WarehouseError(
            failure(
                sql,
                f"job {job.job_id} exists but belongs to {theirs}, not {dict(spec.labels)}: set another warehouse.job_prefix",
            )
        )


def _parameter(
    name: str, value: Any, sql: str
) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if isinstance(value, list | tuple):
        kinds = {_scalar_type(name, item, sql) for item in value if item is not None}
        if len(kinds) > 1:
            raise WarehouseError(failure(sql, f"parameter @{name} mixes types {sorted(kinds)}"))
        return bigquery.ArrayQueryParameter(name, kinds.pop() if kinds else "STRING", list(value))
    return bigquery.ScalarQueryParameter(name, _scalar_type(name, value, sql), value)


def _scalar_type(name: str, value: Any, sql: str) -> str:
    # bool before int (bool is an int), datetime before date (datetime is a date).
    if value is None or isinstance(value, str):
        return "STRING"
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, bytes):
        return "BYTES"
    raise WarehouseError(failure(sql, f"parameter @{name} has unsupported type {type(value).__name__}"))
