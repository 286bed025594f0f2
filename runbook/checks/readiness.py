"""Per-date readiness: a processor's ``ready:`` tables must have rows for a date before it runs.

The seeds' Session 10 failure was a Phase 4 processor run for dates whose Phase 3 tables were
still empty. With ``ready:``, the controller asks :class:`TableReadiness` before each step; a date
whose upstream tables have no rows is skipped as ``upstream_missing`` (listed, not a failure).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runbook.config import ReadyTable, RunbookConfig
from runbook.errors import ConfigError

if TYPE_CHECKING:
    from runbook.hooks import Readiness

_TABLE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,2}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def table_name(ready: ReadyTable) -> str:
    """The table as written in runbook.yaml, without backticks: ``proj.dataset.table``."""
    return ready.table.strip().strip("`")


def count_query(ready: ReadyTable) -> str:
    """``SELECT COUNT(*) ... WHERE date_column BETWEEN @start AND @end`` (BigQuery dialect)."""
    return (
        f"SELECT COUNT(*) AS row_count FROM `{table_name(ready)}` "
        f"WHERE `{ready.date_column}` BETWEEN @start AND @end"
    )


class TableReadiness:
    """The controller's ``Readiness``: one COUNT query per ``ready:`` table, dates bound as parameters.

    Table and column names go into the SQL text, so they are checked against a strict pattern
    when this is built; the dates are always bound by the warehouse driver.
    """

    def __init__(
        self, config: RunbookConfig, warehouse: Callable[[], Any], *, file: str = "runbook.yaml"
    ) -> None:
        self.config = config
        self.warehouse = warehouse
        for name, proc in config.processors.items():
            for index, ready in enumerate(proc.ready):
                path = f"processors.{name}.ready.{index}"
                if not _TABLE.match(table_name(ready)):
                    raise ConfigError(
                        f"not a table name: {ready.table!r} (use dataset.table or project.dataset.table)",
                        file=file,
                        path=f"{path}.table",
                    )
                if not _COLUMN.match(ready.date_column):
                    raise ConfigError(
                        f"not a column name: {ready.date_column!r}", file=file, path=f"{path}.date_column"
                    )

    def missing(self, processor: str, start: str, end: str) -> str | None:
        """None when every ``ready:`` table has rows in [start, end], else which one has none."""
        params = {"start": dt.date.fromisoformat(start), "end": dt.date.fromisoformat(end)}
        for ready in self.config.processors[processor].ready:
            rows = self.warehouse().query(count_query(ready), params)
            if not rows or not next(iter(rows[0].values())):
                span = start if start == end else f"{start}..{end}"
                return f"{table_name(ready)} has no rows for {span}"
        return None


if TYPE_CHECKING:

    def _is_a_readiness(readiness: TableReadiness) -> Readiness:
        return readiness  # mypy proves that TableReadiness is what the controller expects
