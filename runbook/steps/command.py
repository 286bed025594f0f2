"""Command steps: a Jinja-templated command line in its own process group.

The step runs in a new session (its own process group), so a timeout or a stop ends the whole
tree it started, and its output goes to the run's log line by line, tagged.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import shlex
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runbook.config import ProcessorConfig
from runbook.steps import ERROR_TAIL_LINES, StepContext, StepResult
from runbook.steps.processes import (
    TOKEN,
    die_with_parent,
    end_leftovers,
    kill_process_group,
    reap,
    run_key,
    step_token,
)
from runbook.steps.templating import render

__all__ = ["CommandExecutor", "kill_process_group", "reap_orphans", "running_steps"]

READER_GRACE_SECONDS = 2.0
_RUNNING: set[int] = set()  # the PIDs of steps running now: never reaped by the leftover sweep
_RUNNING_LOCK = threading.Lock()


def running_steps() -> set[int]:
    with _RUNNING_LOCK:
        return set(_RUNNING)


def reap_orphans() -> None:
    """Collect the exit status of ended orphans, never that of a step's own process: the steps
    running are read, and their processes reaped, under the lock a step is started under."""
    with _RUNNING_LOCK:
        reap(set(_RUNNING))


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
        token = step_token(run_key(ctx.run_id, ctx.run_token), ctx.task_id)
        env = {**self.env, **{f"RUNBOOK_{k.upper()}": str(v) for k, v in ctx.values.items()}, TOKEN: token}
        # Started and registered under the lock the orphan sweep holds: a step that ends at once
        # must not have its exit status collected by the sweep (its Popen would then read 0).
        with _RUNNING_LOCK:
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
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),  # noqa: PLW1509 - system calls only
                )
            except OSError as exc:
                return StepResult(ok=False, error=f"cannot start {argv!r}: {exc}")
            _RUNNING.add(proc.pid)
        try:
            return self._follow(proc, ctx, token)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc.pid)

    def _follow(self, proc: subprocess.Popen[bytes], ctx: StepContext, token: str) -> StepResult:
        ctx.on_pid(proc.pid)
        timed_out = threading.Event()
        timer = None
        if ctx.timeout:

            def expire() -> None:
                timed_out.set()
                kill_process_group(proc.pid)
                end_leftovers(proc.pid, token, spare=running_steps())
                reap_orphans()

            timer = threading.Timer(ctx.timeout, expire)
            timer.daemon = True
            timer.start()
        tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
        assert proc.stdout is not None
        reader = threading.Thread(target=_read, args=(proc.stdout, tail, ctx), daemon=True)
        reader.start()
        # The step's own exit decides: a descendant still holding its output is ended, not awaited.
        code = proc.wait()
        if timer is not None:
            timer.cancel()
        end_leftovers(proc.pid, token, spare=running_steps())
        reap_orphans()
        reader.join(READER_GRACE_SECONDS)
        proc.stdout.close()
        if timed_out.is_set():
            tail.append(f"step timed out after {ctx.timeout:g}s: process group killed")
            return StepResult(ok=False, exit_code=code, error="\n".join(tail), timed_out=True)
        if code == 0:
            return StepResult(ok=True, exit_code=0)  # finished, even if a stop was asked meanwhile
        if ctx.cancelled.is_set():
            return StepResult(ok=False, exit_code=code, error="stopped", cancelled=True)
        tail.append(f"exit code {code}")
        return StepResult(ok=False, exit_code=code, error="\n".join(tail))


def _read(stream: Any, tail: collections.deque[str], ctx: StepContext) -> None:
    """Copy the step's output to the run's log, keeping its last lines for the error."""
    with contextlib.suppress(ValueError, OSError):  # the stream is closed under us once the step ended
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            tail.append(line)
            ctx.log.write(line, ctx.tag)
