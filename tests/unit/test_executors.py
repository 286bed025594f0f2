"""Executors run real processes and real Python callables; the run log is a real file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import group_alive, process_alive, wait_for

from runbook.config import ProcessorConfig
from runbook.runlog import RunLog
from runbook.steps import StepContext
from runbook.steps.command import CommandExecutor, kill_process_group
from runbook.steps.python import PythonExecutor


@pytest.fixture
def log(tmp_path: Path) -> Iterator[RunLog]:
    opened = RunLog(tmp_path / "logs" / "run-1.log")
    yield opened
    opened.close()


def context(log: RunLog, **fields: Any) -> StepContext:
    values: dict[str, Any] = {
        "processor": "load", "start": "2024-01-01", "end": "2024-01-07", "run_id": 7, "attempt": 2,
        "log": log, "tag": "load 2024-01-01 #2", **fields,
    }  # fmt: skip
    return StepContext(**values)


def command(cwd: Path, command: str | list[str], **fields: Any) -> CommandExecutor:
    return CommandExecutor(ProcessorConfig(command=command, **fields), cwd, {"PATH": "/usr/bin:/bin"})


def logged(log: RunLog) -> list[str]:
    log.close()
    return log.path.read_text().splitlines()


VALUES = {"date": "2024-01-01", "start": "2024-01-01", "end": "2024-01-07", "processor": "load", "run_id": 7}


def test_argv_rendering(tmp_path: Path) -> None:
    split = command(tmp_path, 'load --from {{ start }} --to {{ end }} "two words"')
    assert split.argv(VALUES) == ["load", "--from", "2024-01-01", "--to", "2024-01-07", "two words"]
    listed = command(tmp_path, ["load", "--span={{ start }} {{ end }}", "$HOME"])
    assert listed.argv(VALUES) == ["load", "--span=2024-01-01 2024-01-07", "$HOME"]
    shell = command(tmp_path, "load {{ date }} | tee out && echo done", shell=True)
    assert shell.argv(VALUES) == "load 2024-01-01 | tee out && echo done"
    shell_list = command(tmp_path, ["echo", "a b", "{{ processor }}"], shell=True)
    assert shell_list.argv(VALUES) == "echo 'a b' 'load'"
    with pytest.raises(ValueError, match="undefined"):
        command(tmp_path, "load {{ dat }}").argv(VALUES)


def test_without_a_shell_nothing_is_expanded(tmp_path: Path, log: RunLog) -> None:
    result = command(tmp_path, "echo $HOME && echo {{ date }}").run(context(log))
    assert result.ok and result.exit_code == 0
    assert logged(log)[-1] == "load 2024-01-01 #2 | $HOME && echo 2024-01-01"


def test_with_a_shell_step_values_are_also_in_the_environment(tmp_path: Path, log: RunLog) -> None:
    step = command(tmp_path, "echo $RUNBOOK_START-$RUNBOOK_END $RUNBOOK_ATTEMPT && pwd", shell=True)
    assert step.run(context(log)).ok
    assert logged(log)[-2:] == [
        "load 2024-01-01 #2 | 2024-01-01-2024-01-07 2",
        f"load 2024-01-01 #2 | {tmp_path}",
    ]


def test_a_failing_command_returns_its_exit_code_and_output_tail(tmp_path: Path, log: RunLog) -> None:
    result = command(tmp_path, ["sh", "-c", "for i in $(seq 1 60); do echo line $i; done; exit 7"]).run(
        context(log)
    )
    assert not result.ok and result.exit_code == 7
    assert result.error is not None
    lines = result.error.splitlines()
    assert lines[-1] == "exit code 7" and lines[-2] == "line 60" and "line 1" not in lines
    assert len(logged(log)) == 60


def test_template_and_start_errors_fail_the_step(tmp_path: Path, log: RunLog) -> None:
    bad_template = command(tmp_path, "echo {{ nope }}").run(context(log))
    assert not bad_template.ok and "template error" in (bad_template.error or "")
    missing = command(tmp_path, "no-such-program-xyz --flag").run(context(log))
    assert not missing.ok and "cannot start" in (missing.error or "")


def test_timeout_ends_the_whole_process_group(tmp_path: Path, log: RunLog) -> None:
    step = command(tmp_path, ["sh", "-c", "sleep 30 & echo $! > child; wait"])
    pids: list[int] = []
    began = time.monotonic()
    result = step.run(context(log, timeout=0.5, on_pid=pids.append))
    assert time.monotonic() - began < 10
    assert not result.ok and result.timed_out and "timed out after 0.5s" in (result.error or "")
    child = int((tmp_path / "child").read_text())
    wait_for(
        lambda: not group_alive(pids[0]) and not process_alive(child), timeout=5, what="the group to end"
    )


def test_a_cancelled_step_reports_cancelled(tmp_path: Path, log: RunLog) -> None:
    cancelled = threading.Event()
    pids: list[int] = []

    def stop_soon() -> None:
        while not pids:
            time.sleep(0.01)
        cancelled.set()
        kill_process_group(pids[0])

    threading.Thread(target=stop_soon, daemon=True).start()
    result = command(tmp_path, ["sleep", "30"]).run(context(log, cancelled=cancelled, on_pid=pids.append))
    assert result.cancelled and not result.ok
    assert not group_alive(pids[0])


STEPS = """
seen = {}

def build(date, log):
    log(f"building {date}")
    return 42

def everything(**kwargs):
    seen.update(kwargs)
    return True

def boom(start, end):
    raise RuntimeError(f"no rows between {start} and {end}")
"""


@pytest.fixture
def steps_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"core_steps_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(STEPS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_python_callable_gets_only_the_arguments_it_accepts(
    tmp_path: Path, log: RunLog, steps_module: str
) -> None:
    result = PythonExecutor(f"{steps_module}:build", tmp_path).run(context(log))
    assert result.ok and result.rows_affected == 42
    assert logged(log) == ["load 2024-01-01 #2 | building 2024-01-01"]


def test_python_callable_with_kwargs_gets_every_value(tmp_path: Path, log: RunLog, steps_module: str) -> None:
    result = PythonExecutor(f"{steps_module}:everything", tmp_path).run(context(log))
    assert result.ok and result.rows_affected is None  # True is not a row count
    seen = sys.modules[steps_module].seen
    assert set(seen) == {"date", "start", "end", "run_id", "attempt", "processor", "log"}
    assert (seen["start"], seen["end"], seen["attempt"]) == ("2024-01-01", "2024-01-07", 2)


def test_python_errors_fail_the_step_with_the_traceback_tail(
    tmp_path: Path, log: RunLog, steps_module: str
) -> None:
    result = PythonExecutor(f"{steps_module}:boom", tmp_path).run(context(log))
    assert not result.ok
    assert (result.error or "").splitlines()[-1] == "RuntimeError: no rows between 2024-01-01 and 2024-01-07"
    missing = PythonExecutor("no_such_module_xyz:run", tmp_path).run(context(log))
    assert not missing.ok and "cannot load python step 'no_such_module_xyz:run'" in (missing.error or "")
    no_function = PythonExecutor(f"{steps_module}:nope", tmp_path).run(context(log))
    assert not no_function.ok and "cannot load python step" in (no_function.error or "")


def test_a_step_that_fails_at_once_keeps_its_exit_code_while_orphans_are_reaped(
    tmp_path: Path, log: RunLog
) -> None:
    """The orphan sweep (every turn of the work loop) never collects a step's own exit status:
    if it did, the step's Popen would read 0 and a failed date would be recorded as built."""
    from runbook.steps.command import reap_orphans

    step = command(tmp_path, ["sh", "-c", "exit 3"])
    done = threading.Event()

    def sweep() -> None:
        while not done.is_set():
            reap_orphans()

    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    try:
        codes = [step.run(context(log)).exit_code for _ in range(40)]
    finally:
        done.set()
        sweeper.join()
    assert codes == [3] * 40


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_step_whose_starter_died_before_it_could_arm_the_death_signal_never_runs(tmp_path: Path) -> None:
    """The parent-death signal only covers a parent that dies after it was armed: a child that
    finds another parent than the one that forked it ends before it executes anything."""
    import functools

    from runbook.steps.processes import PARENT_GONE_EXIT, die_with_parent

    marker = tmp_path / "ran"
    argv = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    gone = subprocess.run(
        argv, preexec_fn=functools.partial(die_with_parent, os.getpid() + 1_000_000), check=False
    )
    assert gone.returncode == PARENT_GONE_EXIT and not marker.exists()
    armed = subprocess.run(argv, preexec_fn=functools.partial(die_with_parent, os.getpid()), check=False)
    assert armed.returncode == 0 and marker.exists()
