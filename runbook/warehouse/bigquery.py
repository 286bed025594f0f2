"""The BigQuery warehouse, on the official ``google.cloud.bigquery`` client.

Each statement of a script runs as its own query job with its parameters bound as
``ScalarQueryParameter`` / ``ArrayQueryParameter`` (types inferred from the Python values).

Retries are runbook's, not the client library's: the library's own retries are switched off
(``retry=None``, ``job_retry=None``) and :func:`~runbook.warehouse.call_with_retries` tries a
transient failure again up to ``max_retries`` times with exponential backoff. A retry never runs
a statement twice: a failed ``jobs.insert`` is sent again under the same job id (a 409 Conflict
means the first one got through, and that job is used); a failed poll polls the same job again;
only a job that itself failed for a transient reason is run again, as a new job.

Bulk loads use ``insert_rows_json`` (streaming inserts) with one row id per row kept across
retries, so BigQuery can drop the duplicates of a retried request. Rows in the streaming buffer
cannot be changed by UPDATE/DELETE/MERGE for up to 90 minutes: that is BigQuery's rule.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import google.auth
import requests
from google.api_core import exceptions as api_errors
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery

from runbook.config import WarehouseConfig
from runbook.errors import ConfigError, TransientWarehouseError, WarehouseError
from runbook.warehouse import call_with_retries, plain_value
from runbook.warehouse.dialect import failure, parameter_names, split_statements

RETRY_BASE_SECONDS = 1.0
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
TRANSIENT_REASONS = frozenset(
    {"rateLimitExceeded", "quotaExceeded", "backendError", "internalError", "badGateway"}
)
_TRANSIENT_ERRORS = (
    api_errors.TooManyRequests,
    api_errors.InternalServerError,
    api_errors.ServiceUnavailable,
    api_errors.BadGateway,
    api_errors.GatewayTimeout,
    requests.ConnectionError,
    requests.Timeout,
)
_MISSING_TABLE = re.compile(r"Table ([\w.:-]+) was not found")
# The client documents retry=None as "no retries" but types the argument as Retry.
NO_RETRY: Any = None
_T = TypeVar("_T")


class BigQueryWarehouse:
    """A :class:`~runbook.warehouse.Warehouse` on BigQuery (or an emulator at ``api_endpoint``)."""

    kind = "bigquery"

    def __init__(
        self,
        client: bigquery.Client,
        *,
        max_retries: int = 5,
        maximum_bytes_billed: int | None = None,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self._max_retries = max_retries
        self._maximum_bytes_billed = maximum_bytes_billed
        self._retry_base_seconds = retry_base_seconds
        self._sleep = sleep

    @classmethod
    def from_config(
        cls,
        config: WarehouseConfig,
        environ: Mapping[str, str],
        *,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
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
            sleep=sleep,
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
                raise _wrap(exc, label) from exc
            if errors:
                first = errors[0]
                detail = "; ".join(str(error.get("message", error)) for error in first.get("errors", []))
                raise WarehouseError(failure(label, f"row {first.get('index')}: {detail or first}"))

        self._retrying(attempt)

    def close(self) -> None:
        """Close the client's HTTP session."""
        self.client.close()  # type: ignore[no-untyped-call]

    def _run(self, sql: str, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bigquery.QueryJob]:
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
        )
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
                raise _wrap(exc, sql) from exc
            return rows, job

        return self._retrying(attempt)

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

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        return call_with_retries(
            attempt, max_retries=self._max_retries, base_seconds=self._retry_base_seconds, sleep=self._sleep
        )


def _new_job_id() -> str:
    return f"runbook_{uuid.uuid4().hex}"


def _wrap(exc: Exception, sql: str) -> WarehouseError:
    if isinstance(exc, WarehouseError):
        return exc
    if isinstance(exc, api_errors.GoogleAPICallError):
        reasons = {error.get("reason") for error in exc.errors if isinstance(error, dict)}
        cause = (str(exc.message).strip().splitlines() or [type(exc).__name__])[0]
        missing = _MISSING_TABLE.search(cause) if isinstance(exc, api_errors.NotFound) else None
        if missing:
            cause = f"table {missing.group(1).replace(':', '.')} does not exist"
        if isinstance(exc, _TRANSIENT_ERRORS) or reasons & TRANSIENT_REASONS:
            return TransientWarehouseError(failure(sql, f"{cause} (HTTP {exc.code})"))
        return WarehouseError(failure(sql, cause))
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, _TRANSIENT_ERRORS):
        return TransientWarehouseError(failure(sql, cause))
    return WarehouseError(failure(sql, f"{type(exc).__name__}: {cause}"))


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
