"""The BigQuery warehouse, on the official ``google.cloud.bigquery`` client.

Each statement of a script runs as its own query job; how a job is configured, submitted, retried
and, for SQL steps, run durably is :mod:`runbook.warehouse.bigquery_jobs`, which
:class:`BigQueryWarehouse` is built on.

Retries are runbook's, not the client library's: the library's own retries are switched off
(``retry=None``, ``job_retry=None``) and :func:`~runbook.warehouse.call_with_retries` tries a
transient failure again with jittered exponential backoff until ``retry_deadline`` (ten minutes
by default) has passed. Transient: rate limits (``rateLimitExceeded``, ``jobRateLimitExceeded``,
``quotaExceeded`` that is not a daily quota, HTTP 429) and server errors (500, 502, 503, 504,
``backendError``, ``internalError``); each rate limit is reported as a throttle. A daily quota
used up (``quotaExceeded`` saying "per day") is :class:`~runbook.errors.QuotaExhausted`, with the
next midnight Pacific time as its reset. Everything else (``invalidQuery``,
``resourcesExceeded``, ``bytesBilledLimitExceeded``, ``accessDenied``, ...) is never retried.

Bulk loads use ``insert_rows_json`` (streaming inserts) with one row id per row kept across
retries, so BigQuery can drop the duplicates of a retried request. Rows in the streaming buffer
cannot be changed by UPDATE/DELETE/MERGE for up to 90 minutes: that is BigQuery's rule.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import google.auth
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery

from runbook.config import WarehouseConfig
from runbook.errors import ConfigError, WarehouseError
from runbook.warehouse import plain_value
from runbook.warehouse.bigquery_errors import wrap_error
from runbook.warehouse.bigquery_jobs import NO_RETRY, POLL_SECONDS, BigQueryJobs
from runbook.warehouse.dialect import failure, split_statements

RETRY_BASE_SECONDS = 1.0
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class BigQueryWarehouse(BigQueryJobs):
    """A :class:`~runbook.warehouse.Warehouse` on BigQuery (or an emulator at ``api_endpoint``)."""

    kind = "bigquery"

    def __init__(
        self,
        client: bigquery.Client,
        *,
        max_retries: int = 5,
        maximum_bytes_billed: int | None = None,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
        retry_deadline: float = 600.0,
        poll_seconds: float = POLL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._max_retries = max_retries  # kept for the config's sake: BigQuery retries by deadline
        self._maximum_bytes_billed = maximum_bytes_billed
        self._retry_base_seconds = retry_base_seconds
        self._retry_deadline = retry_deadline
        self._poll_seconds = poll_seconds
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_config(
        cls,
        config: WarehouseConfig,
        environ: Mapping[str, str],
        *,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = POLL_SECONDS,
    ) -> BigQueryWarehouse:
        """Build the client from ``config``: project, location, endpoint and credentials.

        Credentials come from the file named by ``environ[config.credentials_env]`` when set;
        are anonymous when ``api_endpoint`` is on this machine (an emulator); otherwise Google's
        application default credentials.
        """
        credentials: Any = None
        if config.credentials_env:
            path = environ.get(config.credentials_env)
            if not path:
                raise ConfigError(
                    f"environment variable {config.credentials_env} is not set (it should hold the path "
                    "of a Google credentials file)",
                    path="warehouse.credentials_env",
                )
            try:
                credentials, _ = google.auth.load_credentials_from_file(path, scopes=bigquery.Client.SCOPE)  # type: ignore[no-untyped-call]
            except GoogleAuthError as exc:
                raise ConfigError(
                    f"cannot load credentials from {path}: {exc}", path="warehouse.credentials_env"
                ) from exc
        elif config.api_endpoint and urlsplit(config.api_endpoint).hostname in LOCAL_HOSTS:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        options = {"api_endpoint": config.api_endpoint} if config.api_endpoint else None
        try:
            client = bigquery.Client(
                project=config.project,
                credentials=credentials,
                location=config.location,
                client_options=options,
            )
        except GoogleAuthError as exc:
            raise WarehouseError(
                f"no Google credentials for BigQuery ({exc}): run `gcloud auth application-default login` "
                "or set warehouse.credentials_env"
            ) from exc
        return cls(
            client,
            max_retries=config.max_retries,
            maximum_bytes_billed=config.maximum_bytes_billed,
            retry_base_seconds=retry_base_seconds,
            retry_deadline=config.retry_deadline,
            poll_seconds=poll_seconds,
            sleep=sleep,
            clock=clock,
        )

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` and return the rows of its last statement as dicts of Python values."""
        rows: list[dict[str, Any]] = []
        for statement in split_statements(sql):
            rows, _ = self._run(statement, params or {})
        return rows

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int | None:
        """Run a script statement by statement; return ``num_dml_affected_rows`` of the last DML."""
        affected: int | None = None
        for statement in split_statements(sql):
            _, job = self._run(statement, params or {})
            if job.num_dml_affected_rows is not None:
                affected = job.num_dml_affected_rows
        return affected

    def load_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Stream ``rows`` into the existing ``table`` with ``insert_rows_json``."""
        if not rows:
            return
        target = table.strip().strip("`")
        payload = [{key: _json_value(value) for key, value in row.items()} for row in rows]
        row_ids = [uuid.uuid4().hex for _ in rows]
        label = f"INSERT INTO {target} ({len(rows)} rows)"

        def attempt() -> None:
            try:
                errors = self.client.insert_rows_json(target, payload, row_ids=row_ids, retry=NO_RETRY)
            except Exception as exc:
                raise wrap_error(exc, label) from exc
            if errors:
                first = errors[0]
                detail = "; ".join(str(error.get("message", error)) for error in first.get("errors", []))
                raise WarehouseError(failure(label, f"row {first.get('index')}: {detail or first}"))

        self._retrying(attempt)

    def estimate(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Bytes the script would process, from a dry run of each statement (nothing is billed)."""
        total = 0
        for statement in split_statements(sql):
            config = self._config(statement, params, dry_run=True)

            def attempt(statement: str = statement, config: bigquery.QueryJobConfig = config) -> int:
                try:
                    job = self.client.query(statement, job_config=config, retry=NO_RETRY, job_retry=NO_RETRY)
                except Exception as exc:
                    raise wrap_error(exc, statement) from exc
                return int(job.total_bytes_processed or 0)

            total += self._retrying(attempt)
        return total

    def close(self) -> None:
        """Close the client's HTTP session."""
        self.client.close()  # type: ignore[no-untyped-call]

    def _run(self, sql: str, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bigquery.QueryJob]:
        config = self._config(sql, params)
        job_id = _new_job_id()
        job: bigquery.QueryJob | None = None

        def attempt() -> tuple[list[dict[str, Any]], bigquery.QueryJob]:
            nonlocal job, job_id
            try:
                if job is not None and job.error_result is not None:
                    job, job_id = None, _new_job_id()
                if job is None:
                    job = self._submit(sql, config, job_id)
                result = job.result(retry=NO_RETRY, job_retry=NO_RETRY)
                rows = [{key: plain_value(value) for key, value in row.items()} for row in result]
            except Exception as exc:
                raise wrap_error(exc, sql) from exc
            return rows, job

        return self._retrying(attempt)


def _new_job_id() -> str:
    return f"runbook_{uuid.uuid4().hex}"


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value
