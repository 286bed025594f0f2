"""Steps: how one step of a processor runs (a command, a Python callable, SQL, an HTTP call).

An executor gets a :class:`StepContext` and returns a :class:`StepResult`; it never touches the
state store. :func:`make_executor` builds the one a processor's config asks for.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runbook.runlog import RunLog

if TYPE_CHECKING:
    from runbook.redact import Redactor
    from runbook.warehouse import Warehouse
    from runbook.workspace import Workspace

ERROR_TAIL_LINES = 40


@dataclass
class StepContext:
    processor: str
    start: str
    end: str
    run_id: int
    attempt: int
    log: RunLog
    tag: str
    timeout: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    on_pid: Callable[[int], None] = lambda pid: None
    task_id: int = 0
    run_token: str = ""  # when the run was created: part of its job ids
    # The warehouse job id an earlier holder of the task stored (re-attach to it), if any.
    job_id: str | None = None
    # Set (before ``cancelled``) by a stop: warehouse jobs are cancelled, not just left running.
    stop_jobs: threading.Event = field(default_factory=threading.Event)
    # Store a job id on the task before its job is submitted; False: the task is no longer held.
    on_job: Callable[[str], bool] = lambda job_id: True
    # A rate limit was met (its reason): the task's pool shrinks.
    on_throttle: Callable[[str], None] = lambda reason: None

    @property
    def values(self) -> dict[str, Any]:
        return {
            "date": self.start,
            "start": self.start,
            "end": self.end,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "processor": self.processor,
        }


@dataclass
class StepResult:
    ok: bool
    exit_code: int | None = None
    error: str | None = None
    rows_affected: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    skip_reason: str | None = None
    bytes_processed: int | None = None
    bytes_billed: int | None = None
    slot_ms: int | None = None
    quota_reset: dt.datetime | None = None  # a daily quota is used up until then
    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, message) to record


class Executor(Protocol):
    def run(self, ctx: StepContext) -> StepResult: ...


def make_executor(
    workspace: Workspace, name: str, warehouse: Callable[[], Warehouse], redactor: Redactor
) -> Executor:
    """The executor of processor ``name``: its command, callable, HTTP call or SQL."""
    proc = workspace.config.processors[name]
    cwd = workspace.resolve(proc.cwd) if proc.cwd else workspace.root
    if proc.command is not None:
        from runbook.steps.command import CommandExecutor

        env: Mapping[str, str] = {
            **workspace.environ,
            **{
                key: workspace.expand_env(value, f"processors.{name}.env.{key}")
                for key, value in proc.env.items()
            },
        }
        return CommandExecutor(proc, cwd, env)
    if proc.python is not None:
        from runbook.steps.python import PythonExecutor

        return PythonExecutor(proc.python, cwd)
    if proc.http is not None:
        from runbook.steps.http import HttpExecutor

        return HttpExecutor(proc.http, workspace, redactor)
    from runbook.steps.sql import SqlExecutor

    sql = proc.sql if proc.sql is not None else workspace.resolve(proc.sql_file or "").read_text("utf-8")
    prefix = workspace.config.warehouse.job_prefix or _prefix(workspace.config.name)
    return SqlExecutor(sql, warehouse, job_prefix=prefix)


def _prefix(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "runbook"
