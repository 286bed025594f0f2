"""The DuckDB warehouse: BigQuery-dialect SQL run on one local DuckDB file.

SQL goes through :func:`runbook.warehouse.dialect.translate` (cached), parameters are bound as
DuckDB named parameters (``$start``) from a dict. One connection is opened per warehouse and each
call runs on its own ``cursor()`` (a DuckDB connection of its own to the same database), so the
controller's worker threads can call concurrently: queries run in parallel, while statements that
write take turns under one lock, because DuckDB answers two transactions that change the same row
with "Conflict on update" rather than waiting. A conflict that happens anyway (another connection
to the same file in this process) is a :class:`~runbook.errors.TransientWarehouseError` and the
statement is tried again; so is a file another process holds locked ("Could not set lock").

SQL steps (:meth:`DuckDBWarehouse.run_job`) record the rows their last DML affected; DuckDB has
no jobs to re-attach to and no bill, so their job id is only a name and their cost is unknown.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from runbook.errors import TransientWarehouseError, WarehouseError
from runbook.warehouse import JobResult, JobSpec, call_with_retries, plain_value
from runbook.warehouse.dialect import Statement, duckdb_table_name, failure, translate

LOAD_CHUNK_ROWS = 50_000
RETRY_BASE_SECONDS = 0.05
STOP_POLL_SECONDS = 0.05  # how soon a stop or a timeout interrupts a SQL step
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist", re.IGNORECASE)


class DuckDBWarehouse:
    """A :class:`~runbook.warehouse.Warehouse` on the DuckDB database file at ``path``."""

    kind = "duckdb"

    def __init__(
        self,
        path: Path | str,
        *,
        max_retries: int = 5,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self._max_retries = max_retries
        self._retry_base_seconds = retry_base_seconds
        self._sleep = sleep
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

        def connect() -> duckdb.DuckDBPyConnection:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return duckdb.connect(str(self.path))
            except (OSError, duckdb.Error) as exc:
                message = f"cannot open the DuckDB warehouse {self.path}: {_first_line(exc)}"
                if "could not set lock" in str(exc).lower():  # another process has it open: wait a little
                    raise TransientWarehouseError(message, reason="locked") from exc
                raise WarehouseError(message) from exc

        self._connection: duckdb.DuckDBPyConnection | None = call_with_retries(
            connect, max_retries=max_retries, base_seconds=retry_base_seconds, sleep=sleep
        )

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` (BigQuery dialect) and return the rows of its last statement."""
        rows: list[dict[str, Any]] = []
        with self._cursor() as cursor:
            for statement in translate(sql):
                result = self._run(cursor, statement, params or {})
                rows = _rows(result)
        return rows

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int | None:
        """Run a script; return the rows affected by its last INSERT/UPDATE/DELETE/MERGE."""
        affected: int | None = None
        with self._cursor() as cursor:
            for statement in translate(sql):
                result = self._run(cursor, statement, params or {})
                if statement.is_dml:
                    row = result.fetchone()
                    affected = int(row[0]) if row else 0
        return affected

    def load_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` into the existing ``table``, a column at a time.

        Each column travels as one list parameter and ``UNNEST`` zips them back into rows, which
        is about ten times faster than a parameter per value. Missing keys are NULL.
        """
        if not rows:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        names = ", ".join(exp.to_identifier(column, quoted=True).sql(dialect="duckdb") for column in columns)
        unnests = ", ".join(f"UNNEST($c{index})" for index in range(len(columns)))
        sql = f"INSERT INTO {duckdb_table_name(table)} ({names}) SELECT * FROM (SELECT {unnests})"
        with self._cursor() as cursor, self._write_lock:
            for start in range(0, len(rows), LOAD_CHUNK_ROWS):
                chunk = rows[start : start + LOAD_CHUNK_ROWS]
                values = {
                    f"c{index}": [row.get(column) for row in chunk] for index, column in enumerate(columns)
                }
                try:
                    cursor.execute(sql, values)
                except duckdb.Error as exc:
                    cause = _first_line(exc)
                    raise WarehouseError(failure(f"INSERT INTO {table} ({len(rows)} rows)", cause)) from exc

    def run_job(self, sql: str, params: Mapping[str, Any], spec: JobSpec) -> JobResult:
        """Run a SQL step's script; the result carries the rows its last DML affected. A stop
        (``spec.stop``) interrupts the statement that runs: its transaction is rolled back, the
        result says ``cancelled``, and the statements after it do not run."""
        affected: int | None = None
        with self._cursor() as cursor:
            finished = threading.Event()

            def interrupt_on_stop() -> None:
                while not finished.wait(STOP_POLL_SECONDS):
                    if spec.stop.is_set():
                        cursor.interrupt()
                        return

            watcher = threading.Thread(target=interrupt_on_stop, daemon=True)
            watcher.start()
            try:
                for statement in translate(sql):
                    if spec.stop.is_set():
                        return JobResult(job_ids=[spec.job_id], cancelled=spec.job_id)
                    result = self._run(cursor, statement, params)
                    if statement.is_dml:
                        row = result.fetchone()
                        affected = int(row[0]) if row else 0
            except WarehouseError:
                if spec.stop.is_set():
                    return JobResult(job_ids=[spec.job_id], cancelled=spec.job_id)
                raise
            finally:
                finished.set()
                watcher.join()
        return JobResult(rows_affected=affected, job_ids=[spec.job_id])

    def estimate(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """DuckDB cannot say what a query would scan: None."""
        return None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._connection is None:
                raise WarehouseError(f"the DuckDB warehouse {self.path} is closed")
            cursor = self._connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _run(
        self, cursor: duckdb.DuckDBPyConnection, statement: Statement, params: Mapping[str, Any]
    ) -> duckdb.DuckDBPyConnection:
        missing = sorted(statement.parameters - params.keys())
        if missing:
            names = ", ".join(f"@{name}" for name in missing)
            raise WarehouseError(failure(statement.source, f"no value for parameter {names}"))
        bound = {name: params[name] for name in statement.parameters}

        def attempt() -> duckdb.DuckDBPyConnection:
            try:
                if not statement.writes:
                    return cursor.execute(statement.duckdb_sql, bound)
                with self._write_lock:
                    for schema in statement.schemas:
                        cursor.execute(
                            f"CREATE SCHEMA IF NOT EXISTS {exp.to_identifier(schema, quoted=True).sql('duckdb')}"
                        )
                    return cursor.execute(statement.duckdb_sql, bound)
            except duckdb.TransactionException as exc:
                raise TransientWarehouseError(
                    failure(statement.source, _first_line(exc)), reason="conflict"
                ) from exc
            except duckdb.IOException as exc:
                if "could not set lock" not in str(exc).lower():
                    raise WarehouseError(failure(statement.source, _cause(exc, statement))) from exc
                raise TransientWarehouseError(
                    failure(statement.source, _first_line(exc)), reason="locked"
                ) from exc
            except duckdb.Error as exc:
                raise WarehouseError(failure(statement.source, _cause(exc, statement))) from exc

        return call_with_retries(
            attempt, max_retries=self._max_retries, base_seconds=self._retry_base_seconds, sleep=self._sleep
        )


def _rows(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    if result.description is None:
        return []
    names = [column[0] for column in result.description]
    return [
        {name: plain_value(value) for name, value in zip(names, row, strict=True)}
        for row in result.fetchall()
    ]


def _cause(exc: duckdb.Error, statement: Statement) -> str:
    cause = _first_line(exc)
    match = _MISSING_TABLE.search(cause)
    if match:
        name = match.group(1).strip("\"'!").lower()
        known = [table for table in statement.tables if table.lower().rsplit(".", 1)[-1] == name]
        return f"table {known[0] if known else name} does not exist"
    return cause


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
