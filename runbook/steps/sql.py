"""SQL steps: BigQuery-dialect SQL run on the workspace's warehouse."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from runbook.errors import RunbookError
from runbook.steps import StepContext, StepResult
from runbook.warehouse import Warehouse


class SqlExecutor:
    """Runs BigQuery-dialect SQL on the warehouse with ``@date``, ``@start``, ``@end`` bound."""

    def __init__(self, sql: str, warehouse_factory: Callable[[], Warehouse]) -> None:
        self.sql = sql
        self.warehouse_factory = warehouse_factory

    def run(self, ctx: StepContext) -> StepResult:
        params = {
            "date": dt.date.fromisoformat(ctx.start),
            "start": dt.date.fromisoformat(ctx.start),
            "end": dt.date.fromisoformat(ctx.end),
        }
        try:
            rows = self.warehouse_factory().execute(self.sql, params)
        except RunbookError as exc:
            ctx.log.write(str(exc), ctx.tag)
            return StepResult(ok=False, error=str(exc))
        ctx.log.write(f"rows affected: {rows if rows is not None else 'unknown'}", ctx.tag)
        return StepResult(ok=True, rows_affected=rows)
