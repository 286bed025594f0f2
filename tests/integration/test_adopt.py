"""`runbook adopt`: a real background shell script, started outside runbook, followed by its PID and
its log; its watcher a real detached process; killed, stopped and resumed for real.

The script writes ``Processing game date 2024-11-0N`` when the test creates ``go-N`` (and ends at
``go-end``), so the test decides when the log moves on instead of racing a clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import process_alive, query, stop_leftovers, tasks, wait_for
from webhooks import ALWAYS_OK

PATTERN = r"Processing game date (\d{4}-\d{2}-\d{2})"
JOB = """\
for d in 1 2 3 4 5 6 7; do
  while [ ! -e go-$d ]; do sleep 0.05; done
  echo "$(date -u +%FT%TZ) Processing game date 2024-11-0$d" >> job.log
done
while [ ! -e go-end ]; do sleep 0.05; done
"""
YAML = """\
processors:
  pgs:
    command: [sh, -c, "echo {{ date }} >> built-by-runbook.txt"]
"""
WEEK = ("--start", "2024-11-01", "--end", "2024-11-07")


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


class Job:
    """The hand-started backfill: a shell script in the workspace, not runbook's child's child."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "job.sh").write_text(JOB, encoding="utf-8")
        (root / "job.log").write_text("starting the backfill by hand\n", encoding="utf-8")
        self.proc = subprocess.Popen(
            ["sh", "job.sh"], cwd=root, start_new_session=True, stdin=subprocess.DEVNULL
        )
        self.pid = self.proc.pid

    def go(self, *days: int | str) -> None:
        for day in days:
            (self.root / f"go-{day}").touch()

    def end(self) -> None:
        self.go(*range(1, 8), "end")
        self.proc.wait(timeout=60)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)


@pytest.fixture
def job(make_workspace: Any) -> Iterator[tuple[Any, Job]]:
    ws = make_workspace(YAML)
    started = Job(ws.root)
    yield ws, started
    if started.proc.poll() is None:
        started.kill()


def adopt(ws: Any, pid: int, *extra: str) -> dict[str, Any]:
    result = ws.cli("adopt", str(pid), "--log", "job.log", "--processor", "pgs", *WEEK, "--pattern", PATTERN,
                    "--json", *extra)  # fmt: skip
    assert result.code == 0, result.stderr
    return dict(result.json())


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def the_run(ws: Any) -> dict[str, Any]:
    (run,) = ws.cli("status", "--json", check=True).json()["runs"]
    return dict(run)


def statuses(ws: Any) -> dict[str, str]:
    return {t["date"]: t["status"] for t in tasks(ws.db, 1)}


def reached(ws: Any, date: str) -> dict[str, Any] | None:
    run = the_run(ws)
    return run if run["adopted"]["reached"] == date else None


def test_an_adopted_backfill_shows_its_progress_and_ends_with_its_dates_built(job: Any, hooks: Any) -> None:
    ws, script = job
    info = adopt(ws, script.pid)
    assert info["run_id"] == 1 and info["pid"] == script.pid
    watcher = info["watcher_pid"]
    # The watcher outlives the terminal: another session, nothing on its stdin, no runbook parent.
    assert os.getsid(watcher) != os.getsid(0) and os.readlink(f"/proc/{watcher}/fd/0") == "/dev/null"
    assert os.getppid() != _parent(watcher) != os.getpid()

    run = the_run(ws)
    assert run["origin"] == "adopted" and run["status"] == "running" and run["alive"] is True
    assert run["owner"]["pid"] == script.pid and run["log_path"] == str(ws.root / "job.log")
    assert run["adopted"]["pid"] == script.pid and run["adopted"]["pattern"] == PATTERN
    assert run["command_line"] == "sh job.sh"
    assert run["progress"]["work"] == 7 and run["progress"]["succeeded"] == 0

    script.go(1, 2, 3)
    run = wait_for(lambda: reached(ws, "2024-11-03"), what="the log at 2024-11-03")
    assert run["progress"]["succeeded"] == 2 and run["progress"]["running"] == 1
    assert run["adopted"]["process_alive"] is True and run["adopted"]["watcher_alive"] is True
    assert [p["kind"] for p in run["processes"]] == ["watcher"]
    assert run["tasks_per_hour"] is not None and run["eta_seconds"] is not None
    text = ws.cli("status", check=True).stdout
    assert f"adopted PID {script.pid} alive, log at 2024-11-03" in text
    helper = ws.cli("worker", "--idle-exit", "1", "--json", check=True).json()
    assert (
        helper["done"] == 0 and not (ws.root / "built-by-runbook.txt").exists()
    )  # its dates are the script's

    handoff = ws.cli("handoff", "--format", "json", "--out", "-", check=True).json()
    (shown,) = handoff["running"]
    assert shown["id"] == 1 and shown["adopted"]["reached"] == "2024-11-03"
    markdown = ws.cli("handoff", "--out", "-", check=True).stdout
    assert "| Adopted | started outside runbook: `sh job.sh`; its log is at 2024-11-03" in markdown

    script.end()
    wait_for(lambda: the_run(ws)["status"] == "succeeded", what="the run to end")
    assert set(statuses(ws).values()) == {"succeeded"}
    coverage = ws.cli("coverage", "pgs", *WEEK, "--json", check=True).json()
    assert coverage["summary"]["built"] == 7 and coverage["gaps"] == []
    assert not (ws.root / "built-by-runbook.txt").exists()  # the script built them, not runbook
    wait_for(lambda: not process_alive(watcher), what="the watcher to exit")
    events = [e["kind"] for e in ws.cli("show", "1", "--json", check=True).json()["events"]]
    assert events[:2] == ["run_adopted", "watcher_started"] and events[-1] == "run_succeeded"


def test_a_killed_process_leaves_the_dates_it_reached_built_and_resume_builds_the_rest(job: Any) -> None:
    ws, script = job
    adopt(ws, script.pid)
    script.go(1, 2, 3)
    wait_for(lambda: reached(ws, "2024-11-03"), what="the log at 2024-11-03")
    script.kill()
    run = wait_for(lambda: (r := the_run(ws))["status"] == "failed" and r, what="the run to fail")
    assert run["progress"]["succeeded"] == 3 and run["progress"]["failed"] == 4
    assert statuses(ws) == {**dict.fromkeys(["2024-11-01", "2024-11-02", "2024-11-03"], "succeeded"),
                            **dict.fromkeys(["2024-11-04", "2024-11-05", "2024-11-06", "2024-11-07"], "failed")}  # fmt: skip
    detail = ws.cli("show", "1", "--json", check=True).json()
    (group,) = detail["failures"]
    assert group["error"].startswith(
        f"not reached: the adopted process (PID {script.pid}) ended with its log at 2024-11-03"
    )
    assert run["commands"]["resume"] == "runbook resume 1"

    resumed = ws.runbook("resume", "1")
    assert resumed.code == 0, resumed.stderr
    assert set(statuses(ws).values()) == {"succeeded"}
    built = (ws.root / "built-by-runbook.txt").read_text().split()
    assert sorted(built) == ["2024-11-04", "2024-11-05", "2024-11-06", "2024-11-07"]
    after = the_run(ws)
    assert after["origin"] == "adopted" and after["adopted"]["following"] is False
    assert after["log_path"] == "state/logs/run-1.log"  # runbook's steps do not write into the script's log


def test_a_killed_watcher_is_seen_and_resume_follows_the_process_again(job: Any) -> None:
    ws, script = job
    first = adopt(ws, script.pid)["watcher_pid"]
    script.go(1)
    wait_for(lambda: reached(ws, "2024-11-01"), what="the log at 2024-11-01")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not process_alive(first), what="the watcher to die")

    run = wait_for(
        lambda: (r := the_run(ws))["adopted"]["watcher_alive"] is False and r, what="the watcher gone"
    )
    assert run["status"] == "running" and run["alive"] is True  # the process itself runs on
    assert run["adopted"]["process_alive"] is True and run["commands"]["resume"] == "runbook resume 1"
    assert "nothing records" in ws.cli("status", check=True).stdout
    script.go(2, 3)  # progress nobody records for now

    resumed = ws.cli("resume", "1", "--json", check=True).json()
    (watched,) = resumed["watchers"]
    assert watched["run_id"] == 1 and watched["pid"] == script.pid and watched["watcher_pid"] != first
    run = wait_for(lambda: reached(ws, "2024-11-03"), what="the new watcher to catch up")
    assert run["adopted"]["watcher_alive"] is True and run["epoch"] == 2
    again = ws.cli("resume", "1")
    assert again.code == 5 and "its watcher records it" in again.stderr

    script.end()
    wait_for(lambda: the_run(ws)["status"] == "succeeded", what="the run to end")
    assert set(statuses(ws).values()) == {"succeeded"}


def test_process_and_watcher_both_gone_is_interrupted_and_resume_settles_it(job: Any) -> None:
    ws, script = job
    watcher = adopt(ws, script.pid)["watcher_pid"]
    script.go(1, 2)
    wait_for(lambda: reached(ws, "2024-11-02"), what="the log at 2024-11-02")
    os.kill(watcher, signal.SIGKILL)
    script.go(3)
    wait_for(lambda: "2024-11-03" in (ws.root / "job.log").read_text())
    script.kill()
    run = wait_for(lambda: (r := the_run(ws))["status"] == "interrupted" and r, what="the run interrupted")
    assert run["alive"] is False and run["stored_status"] == "running"

    resumed = ws.runbook("resume", "1")
    assert resumed.code == 0, resumed.stderr
    # 11-03 was reached while nobody watched: the log says so, and resume believes it.
    assert sorted((ws.root / "built-by-runbook.txt").read_text().split()) == [
        "2024-11-04", "2024-11-05", "2024-11-06", "2024-11-07",
    ]  # fmt: skip
    kinds = [e["kind"] for e in ws.cli("show", "1", "--json", check=True).json()["events"]]
    assert "adopted_settled" in kinds and kinds[-1] == "run_succeeded"


def test_stop_signals_the_adopted_process_and_leaves_the_run_resumable(job: Any) -> None:
    ws, script = job
    adopt(ws, script.pid)
    script.go(1, 2)
    wait_for(lambda: reached(ws, "2024-11-02"), what="the log at 2024-11-02")
    stopped = ws.cli("stop", "1", check=True)
    assert f"SIGTERM sent to the adopted process PID {script.pid}" in stopped.stdout
    assert script.proc.wait(timeout=60) == -signal.SIGTERM
    run = wait_for(lambda: (r := the_run(ws))["status"] == "interrupted" and r, what="the run interrupted")
    assert run["stored_status"] == "interrupted" and run["commands"]["resume"] == "runbook resume 1"
    assert statuses(ws) == {"2024-11-01": "succeeded", "2024-11-02": "succeeded",
                            **dict.fromkeys(["2024-11-03", "2024-11-04", "2024-11-05", "2024-11-06", "2024-11-07"], "pending")}  # fmt: skip


def test_checks_judge_the_dates_an_adopted_process_built(make_workspace: Any) -> None:
    ws = make_workspace(
        """\
        calendar:
          off_days: [2024-11-05]
        processors:
          pgs:
            command: "true"
            checks:
              - name: rows_loaded
                query: SELECT 0 AS loaded
                expect: ["loaded > 0"]
        """
    )
    script = Job(ws.root)
    try:
        adopt(ws, script.pid)
        script.end()
        run = wait_for(lambda: (r := the_run(ws))["status"] == "blocked" and r, what="the run blocked")
    finally:
        if script.proc.poll() is None:
            script.kill()
    assert run["progress"]["succeeded"] == 6 and run["progress"]["skipped"] == 1
    assert run["checks"] == {"passed": 0, "failed": 1, "failing": ["pgs.rows_loaded"]}
    (check,) = query(ws.db, "SELECT check_name, passed, run_id FROM check_result")
    assert check == {"check_name": "rows_loaded", "passed": 0, "run_id": 1}


def test_an_adopted_run_that_ends_is_announced(make_workspace: Any, hooks: Any) -> None:
    hook = hooks(ALWAYS_OK)
    ws = make_workspace("notify:\n  - url: ${ADOPT_HOOK}\n" + YAML, extra_env={"ADOPT_HOOK": hook.url + "/x"})
    script = Job(ws.root)
    try:
        result = ws.cli("adopt", str(script.pid), "--log", "job.log", "-p", "pgs", *WEEK, "--pattern", PATTERN,
                        env={"ADOPT_HOOK": hook.url + "/x"})  # fmt: skip
        assert result.code == 0, result.stderr
        script.end()
    finally:
        if script.proc.poll() is None:
            script.kill()
    (doc,) = wait_for(lambda: hook.bodies("finished"), what="the finished notification")
    assert doc["run"]["origin"] == "adopted" and doc["run"]["adopted"]["reached"] == "2024-11-07"


def test_a_pid_that_does_not_run_or_a_log_that_cannot_be_read_is_one_line_and_exit_2(
    make_workspace: Any, tmp_path: Path
) -> None:
    ws = make_workspace(YAML)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (ws.root / "job.log").write_text("", encoding="utf-8")
    cases = {
        (str(gone.pid), "job.log"): f"runbook: error: no process with PID {gone.pid} is running: nothing to adopt",
        (str(os.getpid()), "missing.log"): f"runbook: error: cannot read log {ws.root / 'missing.log'}: No such file or directory",
        (str(os.getpid()), "."): f"runbook: error: cannot read log {ws.root}: Is a directory",
    }  # fmt: skip
    for (pid, log), line in cases.items():
        result = ws.cli("adopt", pid, "--log", log, "--processor", "pgs", *WEEK)
        assert (result.code, result.stderr.strip().splitlines()) == (2, [line])
    bad = ws.cli("adopt", str(os.getpid()), "--log", "job.log", "--processor", "pgs", *WEEK, "--pattern", "(")
    assert bad.code == 2 and bad.stderr.startswith(
        "runbook: error: --pattern '(' is not a valid regular expression"
    )
    unknown = ws.cli("adopt", str(os.getpid()), "--log", "job.log", "--processor", "nope", *WEEK)
    assert unknown.code == 2 and "unknown processor 'nope'" in unknown.stderr
    assert not ws.db.exists()  # nothing recorded


@pytest.mark.postgres
def test_adopted_on_postgres(make_workspace: Any, pg_url: str) -> None:
    ws = make_workspace(YAML, extra_env={"RUNBOOK_DATABASE_URL": pg_url})
    script = Job(ws.root)
    try:
        result = ws.cli("adopt", str(script.pid), "--log", "job.log", "-p", "pgs", *WEEK, "--pattern", PATTERN,
                        env={"RUNBOOK_DATABASE_URL": pg_url})  # fmt: skip
        assert result.code == 0, result.stderr
        status = lambda: ws.cli("status", "--json", env={"RUNBOOK_DATABASE_URL": pg_url}).json()["runs"][0]  # noqa: E731
        script.go(1, 2)
        wait_for(lambda: status()["adopted"]["reached"] == "2024-11-02", what="the log at 2024-11-02")
        script.kill()
        run = wait_for(lambda: (r := status())["status"] == "failed" and r, what="the run to fail")
    finally:
        if script.proc.poll() is None:
            script.kill()
    assert (run["progress"]["succeeded"], run["progress"]["failed"]) == (2, 5)
    resumed = ws.runbook("resume", "1")
    assert resumed.code == 0, resumed.stderr
    assert status()["progress"]["succeeded"] == 7 and not ws.db.exists()
