"""Command steps: a Jinja-templated command line in its own process group.

The step runs in a new session (its own process group), so a timeout or a stop ends the whole
tree it started, and its output goes to the run's log line by line, tagged.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runbook.config import ProcessorConfig
from runbook.steps import ERROR_TAIL_LINES, StepContext, StepResult
from runbook.steps.templating import render

KILL_GRACE_SECONDS = 5.0


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
