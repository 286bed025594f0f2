"""Interrupting detached runs for real (SIGKILL of the controller, `runbook stop`) and resuming them.

Every step appends ``processor date`` to runs.txt when it starts, so the test counts executions:
after a resume every date has succeeded once, and only the tasks that were ``running`` in the
state DB at the interruption ran twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import (
    executions,
    group_alive,
    ledger_command,
    process_alive,
    query,
    read_ledger,
    run_row,
    stop_leftovers,
    tasks,
    wait_for,
)

CHURN = """
processors:
  a:
    command: [sh, -c, "echo {{ processor }} {{ date }} >> runs.txt; sleep 0.25"]
  b:
    needs: [a]
    command: [sh, -c, "echo {{ processor }} {{ date }} >> runs.txt; sleep 0.25"]
"""

# Dates from 2024-01-04 on sleep $SLOW seconds when the controller has SLOW in its environment:
# with 2 workers the run settles with a 01-04 and a 01-05 in flight and everything before done.
SETTLING = """
processors:
  a:
    command: &step
      - sh
      - -c
      - >-
        echo {{ processor }} {{ date }} >> runs.txt; echo $$ > pid-{{ processor }}-{{ date }};
        sleep {% if date >= '2024-01-04' %}${SLOW:-0.05}{% else %}0.05{% endif %} & wait
  b:
    needs: [a]
    command: *step
"""
IN_FLIGHT = {("a", "2024-01-04"), ("a", "2024-01-05")}
SIX_DAYS = ("--start", "2024-01-01", "--end", "2024-01-06", "--workers", "2")


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def by_status(db: Path, run_id: int, status: str) -> set[tuple[str, str]]:
    return {(t["processor"], t["date"]) for t in tasks(db, run_id) if t["status"] == status}


def start_detached(ws: Any, *args: str, env: dict[str, str] | None = None) -> tuple[int, int]:
    """Start a detached run; return its id and its controller's PID as `status --json` reports it."""
    info = ws.runbook("run", *args, "--detach", "--json", check=True, env=env).json()
    status = ws.cli("status", "--json", check=True).json()
    (run,) = [r for r in status["runs"] if r["id"] == info["run_id"]]
    assert run["owner"]["pid"] == info["pid"]
    return info["run_id"], run["owner"]["pid"]


def settled(ws: Any, run_id: int) -> bool:
    """The SETTLING run has its two slow steps started and nothing else left to start."""
    return (
        by_status(ws.db, run_id, "running") == IN_FLIGHT
        and len(by_status(ws.db, run_id, "succeeded")) == 6
        and all((ws.root / f"pid-{p}-{d}").exists() for p, d in IN_FLIGHT)
    )


def assert_resumed_completely(ws: Any, run_id: int, twice: set[tuple[str, str]], total: int) -> None:
    rows = tasks(ws.db, run_id)
    assert len(rows) == total
    assert {t["status"] for t in rows} == {"succeeded"}, [
        (t["processor"], t["date"], t["status"]) for t in rows
    ]
    assert run_row(ws.db, run_id)["status"] == "succeeded"
    ran = executions(ws.root / "runs.txt")
    assert set(ran) == {(t["processor"], t["date"]) for t in rows}, "no date lost"
    assert {key for key, count in ran.items() if count > 1} == twice
    assert max(ran.values()) <= 2


def test_sigkill_in_the_middle_then_resume_runs_only_in_flight_dates_again(make_workspace: Any) -> None:
    ws = make_workspace(CHURN)
    run_id, pid = start_detached(ws, "--start", "2024-01-01", "--end", "2024-01-12", "--workers", "3")
    wait_for(lambda: len(by_status(ws.db, run_id, "succeeded")) >= 5, what="5 succeeded tasks")

    # Freeze the controller so the state DB cannot change, and kill it once every task the DB
    # calls running has started its step (a claim is written just before the step starts).
    deadline = time.monotonic() + 20
    while True:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.3)
        running = by_status(ws.db, run_id, "running")
        if running and running <= set(executions(ws.root / "runs.txt")):
            break
        assert time.monotonic() < deadline, "never caught the run with steps in flight"
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(pid), what="controller gone")
    assert len(by_status(ws.db, run_id, "pending")) > 0, "killed in the middle, not at the end"

    (seen,) = [r for r in ws.cli("status", "--json", check=True).json()["runs"] if r["id"] == run_id]
    assert seen["status"] == "interrupted" and seen["alive"] is False

    result = ws.runbook("resume")
    assert result.code == 0, result.stdout + result.stderr
    assert_resumed_completely(ws, run_id, running, total=24)
    kinds = [
        e["kind"] for e in query(ws.db, "SELECT kind FROM event WHERE run_id = ? ORDER BY id", (run_id,))
    ]
    assert kinds.count("run_started") == 2 and "run_resumed" in kinds


def test_steps_die_with_a_killed_controller_and_resume_reruns_them(make_workspace: Any) -> None:
    ws = make_workspace(SETTLING)
    run_id, pid = start_detached(ws, *SIX_DAYS, env={"SLOW": "30"})
    wait_for(lambda: settled(ws, run_id), what="two slow steps in flight")

    # While the controller lives, resume refuses to start the run a second time: asked for by
    # id it names the owner and exits 5 (busy); asked for every run, it leaves this one alone.
    busy = ws.runbook("resume", str(run_id))
    assert busy.code == 5 and busy.stderr.count("\n") == 1, busy.stderr
    assert f"run {run_id} is running: its controller is PID {pid} on " in busy.stderr
    again = ws.runbook("resume")
    assert again.code == 0 and f"run {run_id} is still running (PID {pid}" in again.stderr
    assert run_row(ws.db, run_id)["pid"] == pid
    started = query(
        ws.db, "SELECT count(*) AS n FROM event WHERE run_id = ? AND kind = 'run_started'", (run_id,)
    )
    assert started[0]["n"] == 1
    assert executions(ws.root / "runs.txt") == {key: 1 for key in executions(ws.root / "runs.txt")}

    # A step's PID is recorded once it has run for a moment (a fast step's never is).
    orphans = [int((ws.root / f"pid-{p}-{d}").read_text()) for p, d in IN_FLIGHT]
    wait_for(
        lambda: {t["pid"] for t in tasks(ws.db, run_id) if t["status"] == "running"} == set(orphans),
        what="the state DB to know the PIDs of steps in flight",
    )
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(pid), what="controller gone")
    # A step dies with its controller (a resumed run never runs a date twice at the same time);
    # what it started in its process group is ended by the resume that takes the run over.
    wait_for(lambda: not any(process_alive(p) for p in orphans), timeout=10, what="the steps to die with it")
    assert all(group_alive(g) for g in orphans), "the steps' own children are still in their groups"

    result = ws.runbook("resume", str(run_id))  # without SLOW: the reruns are quick
    assert result.code == 0, result.stdout + result.stderr
    assert not any(group_alive(g) for g in orphans), "resume ended what the steps left behind"
    assert_resumed_completely(ws, run_id, IN_FLIGHT, total=12)


def test_stop_then_resume(make_workspace: Any) -> None:
    ws = make_workspace(SETTLING)
    run_id, pid = start_detached(ws, *SIX_DAYS, env={"SLOW": "30"})
    wait_for(lambda: settled(ws, run_id), what="two slow steps in flight")

    (run,) = [r for r in ws.cli("status", "--json", check=True).json()["runs"] if r["id"] == run_id]
    assert_status_schema(run, pid)

    steps = [int((ws.root / f"pid-{p}-{d}").read_text()) for p, d in IN_FLIGHT]
    asked = time.monotonic()
    stopped = ws.runbook("stop", str(run_id))
    assert stopped.code == 0, stopped.stderr
    assert f"runbook resume {run_id}" in stopped.stdout
    wait_for(lambda: not process_alive(pid), timeout=20, what="controller exits after stop")
    assert time.monotonic() - asked < 15, "stop did not wait for the 30 s steps"
    assert run_row(ws.db, run_id)["status"] == "interrupted"
    assert not by_status(ws.db, run_id, "running")
    assert not any(group_alive(g) for g in steps), "steps in flight were ended with their process groups"
    assert by_status(ws.db, run_id, "succeeded") == {(p, f"2024-01-0{d}") for p in "ab" for d in (1, 2, 3)}

    status = ws.cli("status", check=True).stdout
    assert f"runbook resume {run_id}" in status

    result = ws.runbook("resume", str(run_id))
    assert result.code == 0, result.stdout + result.stderr
    assert_resumed_completely(ws, run_id, IN_FLIGHT, total=12)


def assert_status_schema(run: dict[str, Any], pid: int) -> None:
    """`status --json` of a running detached run: the documented keys with their types."""
    types = {
        "id": int,
        "processors": list,
        "status": str,
        "alive": bool,
        "owner": dict,
        "log_path": str,
        "progress": dict,
        "per_processor": list,
        "tasks_per_hour": float,
        "eta_seconds": int,
        "eta_at": str,
        "started_at": str,
        "heartbeat_at": str,
    }
    for key, kind in types.items():
        assert isinstance(run[key], kind), f"{key}: {run[key]!r} is not {kind.__name__}"
    assert run["status"] == "running" and run["owner"]["pid"] == pid and run["processors"] == ["a", "b"]
    assert run["alive"] is True and isinstance(run["owner"]["host"], str)
    assert run["log_path"].endswith(f"run-{run['id']}.log")
    progress = run["progress"]
    assert all(
        isinstance(progress[key], int)
        for key in ("total", "work", "succeeded", "failed", "skipped", "running")
    )
    assert (
        progress["total"],
        progress["succeeded"],
        progress["failed"],
        progress["skipped"],
        progress["running"],
    ) == (
        12,
        6,
        0,
        0,
        2,
    )
    assert run["tasks_per_hour"] > 0 and run["eta_seconds"] > 0
    assert run["started_at"].endswith("Z") and run["heartbeat_at"].endswith("Z")


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_resume_skips_the_dates_another_run_built_since(
    make_workspace: Any, store: str, request: pytest.FixtureRequest
) -> None:
    """Run 1 fails a date; run 2 builds it; resuming run 1 does not build it a third time, and
    what waited on it there runs."""
    env = {"RUNBOOK_DATABASE_URL": request.getfixturevalue("pg_url")} if store == "postgres" else {}
    ws = make_workspace("", extra_env=env)
    ledger = ws.root / "ledger.txt"
    step = ledger_command(ledger)
    ws.write(f"processors:\n  a:\n    command: {step}\n  b:\n    needs: [a]\n    command: {step}\n")
    first = ws.runbook(
        "run", "--start", "2024-01-01", "--end", "2024-01-03", env={"LEDGER_FAIL": "a:2024-01-02"}
    )
    assert first.code == 1, first.stdout + first.stderr
    second = ws.runbook("run", "a", "--start", "2024-01-02", "--end", "2024-01-02")
    assert second.code == 0, second.stdout + second.stderr

    preview = ws.cli("resume", "1", "--dry-run", "--json", check=True).json()
    (planned,) = preview["runs"]
    assert planned["already_done"] == 1 and planned["reopen"] == {"failed": 0, "blocked": 1, "cancelled": 0}
    assert {(d["processor"], d["date"], d["status"]) for d in planned["dates"]} >= {
        ("a", "2024-01-02", "already_done"),
        ("b", "2024-01-02", "blocked"),
    }
    assert "a" not in planned["ranges"]
    resumed = ws.runbook("resume", "1")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    ends = Counter((e.processor, e.date) for e in read_ledger(ledger) if e.kind == "end")
    assert ends[("a", "2024-01-02")] == 1, "built by run 2, not again by the resume of run 1"
    assert ends[("b", "2024-01-02")] == 1, "what waited on it ran"
    shown = ws.cli("show", "1", "--json", "--tasks", check=True).json()
    (redone,) = [t for t in shown["tasks"] if (t["processor"], t["date"]) == ("a", "2024-01-02")]
    assert (redone["status"], redone["skip_reason"]) == ("skipped", "already_done")
    assert redone["error_tail"] == "built by run 2 since"
    assert shown["run"]["status"] == "succeeded"
