"""Executors: how one step of a processor runs (a command, a Python callable, SQL, an HTTP call).

An executor gets a :class:`StepContext` and returns a :class:`StepResult`; it never touches the
state store. Command steps run in their own process group so a timeout or a stop ends the whole
tree the step started.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import inspect
import os
import shlex
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runbook.config import ProcessorConfig
from runbook.errors import RunbookError, StepError
from runbook.runlog import RunLog
from runbook.templating import render

ERROR_TAIL_LINES = 40
KILL_GRACE_SECONDS = 5.0


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


def kill_process_group(pid: int, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class CommandExecutor:
    """Runs a Jinja-templated command line, without a shell unless ``shell: true``."""

    def __init__(self, proc: ProcessorConfig, cwd: Path, env: Mapping[str, str]) -> None:
        self.proc = proc
        self.cwd = cwd
        self.env = dict(env)

    def argv(self, values: dict[str, Any]) -> list[str] | str:
        command = self.proc.command
        assert command is not None
        if self.proc.shell:
            text = command if isinstance(command, str) else " ".join(shlex.quote(c) for c in command)
            return render(text, values)
        if isinstance(command, str):
            return shlex.split(render(command, values))
        return [render(part, values) for part in command]

    def run(self, ctx: StepContext) -> StepResult:
        try:
            argv = self.argv(ctx.values)
        except ValueError as exc:
            return StepResult(ok=False, error=f"template error: {exc}")
        env = {**self.env, **{f"RUNBOOK_{k.upper()}": str(v) for k, v in ctx.values.items()}}
        try:
            proc = subprocess.Popen(
                argv,
                shell=self.proc.shell,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return StepResult(ok=False, error=f"cannot start {argv!r}: {exc}")
        ctx.on_pid(proc.pid)
        timed_out = threading.Event()
        timer = None
        if ctx.timeout:

            def expire() -> None:
                timed_out.set()
                kill_process_group(proc.pid)

            timer = threading.Timer(ctx.timeout, expire)
            timer.daemon = True
            timer.start()
        tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
        assert proc.stdout is not None
        with proc.stdout:  # closed here, not left to the garbage collector
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                tail.append(line)
                ctx.log.write(line, ctx.tag)
        code = proc.wait()
        if timer is not None:
            timer.cancel()
        if timed_out.is_set():
            tail.append(f"step timed out after {ctx.timeout:g}s: process group killed")
            return StepResult(ok=False, exit_code=code, error="\n".join(tail), timed_out=True)
        if ctx.cancelled.is_set():
            return StepResult(ok=False, exit_code=code, error="stopped", cancelled=True)
        if code != 0:
            tail.append(f"exit code {code}")
            return StepResult(ok=False, exit_code=code, error="\n".join(tail))
        return StepResult(ok=True, exit_code=0)


class PythonExecutor:
    """Calls ``module:function`` in-process with the step's values it accepts as keyword arguments.

    The function may also accept ``log`` (a callable taking one line). An int it returns is
    recorded as the rows affected; an exception fails the step with its traceback's tail.
    """

    def __init__(self, target: str, cwd: Path) -> None:
        self.target = target
        self.cwd = cwd
        self._function: Callable[..., Any] | None = None
        self._accepts: set[str] | None = None

    def function(self) -> Callable[..., Any]:
        if self._function is None:
            module_name, _, attr = self.target.partition(":")
            try:
                module = importlib.import_module(module_name)
                function = getattr(module, attr)
            except (ImportError, AttributeError) as exc:
                raise StepError(f"cannot load python step {self.target!r}: {exc}") from None
            params = inspect.signature(function).parameters.values()
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                self._accepts = {p.name for p in params}
            self._function = function
        return self._function

    def run(self, ctx: StepContext) -> StepResult:
        try:
            function = self.function()
        except StepError as exc:
            return StepResult(ok=False, error=str(exc))
        kwargs: dict[str, Any] = {**ctx.values, "log": lambda line: ctx.log.write(str(line), ctx.tag)}
        if self._accepts is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in self._accepts}
        try:
            value = function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of user code fails the step
            tail = traceback.format_exc().splitlines()[-ERROR_TAIL_LINES:]
            for line in tail:
                ctx.log.write(line, ctx.tag)
            return StepResult(ok=False, error="\n".join(tail) or repr(exc))
        rows = value if isinstance(value, int) and not isinstance(value, bool) else None
        return StepResult(ok=True, rows_affected=rows)


class SqlExecutor:
    """Runs BigQuery-dialect SQL on the warehouse with ``@date``, ``@start``, ``@end`` bound."""

    def __init__(self, sql: str, warehouse_factory: Callable[[], Any]) -> None:
        self.sql = sql
        self.warehouse_factory = warehouse_factory

    def run(self, ctx: StepContext) -> StepResult:
        import datetime as dt

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
