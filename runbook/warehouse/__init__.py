"""The warehouse seam: one Protocol, two adapters (DuckDB locally, BigQuery for real).

The controller and the checks talk to a :class:`Warehouse` and never to a driver. SQL is written
in BigQuery's dialect; the DuckDB adapter translates it (:mod:`runbook.warehouse.dialect`).
Parameters (``@start``) are always bound by the driver, never pasted into the SQL text.

Only the adapter modules import ``duckdb`` or ``google.cloud.bigquery``, and
:func:`open_warehouse` imports the one it needs when it is called, so ``import runbook.warehouse``
stays cheap and works without either driver installed.

Every driver error surfaces as :class:`~runbook.errors.WarehouseError` naming the query and the
cause; rate limits and 5xx answers as :class:`~runbook.errors.TransientWarehouseError`, which the
adapters retry with exponential backoff (:func:`call_with_retries`) before giving up.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from runbook.config import WarehouseConfig
from runbook.errors import TransientWarehouseError

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "Warehouse",
    "call_with_retries",
    "open_warehouse",
    "plain_value",
    "to_date",
]

MAX_BACKOFF_SECONDS = 60.0
_T = TypeVar("_T")


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
    max_retries: int,
    base_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Return ``call()``, trying again after each TransientWarehouseError up to ``max_retries`` times.

    The waits double from ``base_seconds`` (capped at :data:`MAX_BACKOFF_SECONDS`), each shortened
    by a random part of up to half so that threads which collided do not collide again in step.
    When the retries run out the last error is raised again, saying how many tries were made.
    """
    attempt = 0
    while True:
        try:
            return call()
        except TransientWarehouseError as exc:
            if attempt >= max_retries:
                if attempt == 0:
                    raise
                raise TransientWarehouseError(f"{exc.message} (gave up after {attempt + 1} tries)") from exc
            sleep(min(base_seconds * 2**attempt, MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0))
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
