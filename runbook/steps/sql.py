"""SQL steps: BigQuery-dialect SQL run on the workspace's warehouse.

On BigQuery each attempt runs under a deterministic job id (:func:`runbook.warehouse.job_id_for`)
that is stored on the task before the job is submitted; an attempt that finds a job id stored by
an earlier holder (a controller that died, a stop, a takeover) re-attaches to that job instead of
running the SQL again. Jobs carry the labels ``runbook_run``, ``runbook_processor``,
``runbook_date`` and ``runbook_task``, so that ``INFORMATION_SCHEMA.JOBS`` attributes their cost.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from runbook.errors import QuotaExhausted, RunbookError
from runbook.steps import StepContext, StepResult
from runbook.warehouse import JobResult, JobSpec, Warehouse, job_id_for, job_labels


class SqlExecutor:
    """Runs BigQuery-dialect SQL on the warehouse with ``@date``, ``@start``, ``@end`` bound."""

    def __init__(
        self, sql: str, warehouse_factory: Callable[[], Warehouse], *, job_prefix: str = "runbook"
    ) -> None:
        self.sql = sql
        self.warehouse_factory = warehouse_factory
        self.job_prefix = job_prefix

    def params(self, start: str, end: str) -> dict[str, dt.date]:
        return {
            "date": dt.date.fromisoformat(start),
            "start": dt.date.fromisoformat(start),
            "end": dt.date.fromisoformat(end),
        }

    def _run_timed(
        self, warehouse: Warehouse, params: dict[str, dt.date], spec: JobSpec, timed_out: threading.Event
    ) -> JobResult:
        """Run the step's jobs; past ``spec.timeout`` the running job is cancelled as a stop would."""
        timer = None
        if spec.timeout:

            def expire() -> None:
                timed_out.set()
                spec.stop.set()

            timer = threading.Timer(spec.timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            return warehouse.run_job(self.sql, params, spec)
        finally:
            if timer is not None:
                timer.cancel()

    def run(self, ctx: StepContext) -> StepResult:
        params = self.params(ctx.start, ctx.end)
        timed_out = threading.Event()
        try:
            warehouse = self.warehouse_factory()
            durable = warehouse.kind == "bigquery"  # DuckDB has no jobs to come back to
            job_id = ctx.job_id or job_id_for(
                self.job_prefix, ctx.run_id, ctx.task_id, ctx.attempt, ctx.run_token
            )
            if durable and ctx.job_id is None and not ctx.on_job(job_id):
                return StepResult(
                    ok=False, cancelled=True, error="the task was taken over before its job started"
                )
            labels = job_labels(
                runbook_run=ctx.run_id, runbook_processor=ctx.processor, runbook_date=ctx.start,
                runbook_task=ctx.task_id,
            )  # fmt: skip
            spec = JobSpec(
                job_id, labels, attach=ctx.job_id is not None, stop=ctx.stop_jobs, abandon=ctx.cancelled,
                on_throttle=ctx.on_throttle, timeout=ctx.timeout,
            )  # fmt: skip
            if durable:
                ctx.log.write(f"{'re-attaching to' if spec.attach else 'job'} {job_id}", ctx.tag)
            result = self._run_timed(warehouse, params, spec, timed_out)
        except QuotaExhausted as exc:
            ctx.log.write(str(exc), ctx.tag)
            return StepResult(ok=False, error=str(exc), quota_reset=exc.resets_at)
        except RunbookError as exc:
            ctx.log.write(str(exc), ctx.tag)
            return StepResult(ok=False, error=str(exc))
        cost: dict[str, Any] = {"bytes_processed": result.bytes_processed, "bytes_billed": result.bytes_billed,
                                "slot_ms": result.slot_ms}  # fmt: skip
        events = [
            ("job_reattached", f"re-attached to job {job} of an earlier holder") for job in result.reattached
        ]
        if timed_out.is_set() and result.cancelled is not None:
            # An attempt that failed: the task's retries apply, as to a command that timed out.
            message = f"step timed out after {ctx.timeout:g}s" + (
                (f": job {result.cancelled} cancelled" if durable else ": its statement was interrupted")
                if result.cancelled
                else ""
            )
            ctx.log.write(message, ctx.tag)
            return StepResult(ok=False, error=message, events=[*events, ("job_cancelled", message)], **cost)
        if result.cancelled == "":  # stopped while backing off: no job was running
            return StepResult(
                ok=False, cancelled=True, error="stopped before its job ran", events=events, **cost
            )
        if result.cancelled is not None:
            message = (
                f"job {result.cancelled} cancelled (stop)" if durable else "statement interrupted (stop)"
            )
            ctx.log.write(message, ctx.tag)
            return StepResult(ok=False, cancelled=True, error=message, events=[*events, ("job_cancelled", message)],
                              **cost)  # fmt: skip
        if result.abandoned:
            return StepResult(
                ok=False, cancelled=True, error="its job was left running for the task's new holder"
            )
        line = f"rows affected: {result.rows_affected if result.rows_affected is not None else 'unknown'}"
        if result.bytes_billed is not None:
            line += f"; bytes processed {result.bytes_processed}, billed {result.bytes_billed}, slot ms {result.slot_ms}"
        ctx.log.write(line, ctx.tag)
        return StepResult(ok=True, rows_affected=result.rows_affected, events=events, **cost)
