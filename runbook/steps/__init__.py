"""Steps: how one step of a processor runs (a command, a Python callable, SQL, an HTTP call).

An executor gets a :class:`StepContext` and returns a :class:`StepResult`; it never touches the
state store. :func:`make_executor` builds the one a processor's config asks for.
"""

from __future__ import annotations

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
    return SqlExecutor(sql, warehouse)
