"""What runbook does when things go wrong around a run: a stop during the grace period, steps that
leave descendants behind, a state store that stops taking writes, a corrupt state DB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import (
    ledger_command,
    process_alive,
    read_ledger,
    run_row,
    stop_leftovers,
    tasks,
    wait_for,
)


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def shown(ws: Any, run_id: int) -> dict[str, Any]:
    document: dict[str, Any] = ws.cli("show", str(run_id), "--json", "--tasks", check=True).json()
    return document


def pid_in(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text().strip(), what=f"{path.name} written"))


def test_a_step_that_exits_0_during_the_stop_grace_period_counts_as_built(make_workspace: Any) -> None:
    ws = make_workspace("")
    ledger = ws.root / "ledger.txt"
    ws.write(f"processors:\n  a:\n    command: {ledger_command(ledger)}\n")
    env = {"LEDGER_SLEEP": "60", "LEDGER_TERM_EXIT0": "1"}
    run = ws.runbook("run", "--start", "2024-01-01", "--end", "2024-01-04", "--workers", "2", "--detach", "--json",
                     check=True, env=env).json()  # fmt: skip
    run_id = run["run_id"]
    wait_for(
        lambda: len([e for e in read_ledger(ledger) if e.kind == "start"]) == 2, what="two steps started"
    )
    stopped = ws.runbook("stop", str(run_id))
    assert stopped.code == 0, stopped.stderr
    wait_for(lambda: not process_alive(run["pid"]), timeout=60, what="controller stopped")
    rows = {r["date"]: r for r in tasks(ws.db, run_id)}
    finished = {e.date for e in read_ledger(ledger) if e.kind == "end"}
    assert len(finished) == 2  # both steps ended with exit 0 after SIGTERM, within the grace period
    assert {rows[d]["status"] for d in finished} == {"succeeded"}
    assert run_row(ws.db, run_id)["status"] == "interrupted"
    resumed = ws.runbook("resume", str(run_id), env={"LEDGER_SLEEP": "0.1"})
    assert resumed.code == 0, resumed.stderr
    started = [e.date for e in read_ledger(ledger) if e.kind == "start"]
    assert sorted(started) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"], "nothing ran twice"


GRANDCHILDREN = """
processors:
  holds_output:
    # A background grandchild keeps the step's stdout open; the step itself exits 0 at once.
    command: [sh, -c, "sleep 300 & echo $! > holder.pid; echo done"]
  escapes:
    # A grandchild in its own session outlives a step that succeeded.
    command: [sh, -c, "setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' > /dev/null 2>&1 & sleep 0.5"]
  times_out:
    timeout: 2s
    command: [sh, -c, "setsid sh -c 'echo $$ > timed.pid; exec sleep 300' > /dev/null 2>&1 & sleep 300"]
"""


def test_no_descendant_outlives_its_step_and_a_steps_own_exit_decides(make_workspace: Any) -> None:
    ws = make_workspace(GRANDCHILDREN)
    result = ws.runbook("run", "--start", "2024-01-01", "--end", "2024-01-01", "--json", timeout=60)
    assert result.code == 1, result.stderr  # times_out failed; the others did not
    rows = {r["processor"]: r for r in tasks(ws.db)}
    assert rows["holds_output"]["status"] == "succeeded"
    # Its grandchild held the output for 300 s; the step was recorded when the step itself exited.
    assert rows["holds_output"]["duration_seconds"] < 10
    assert rows["escapes"]["status"] == "succeeded"
    assert rows["times_out"]["status"] == "failed" and "timed out" in (rows["times_out"]["error_tail"] or "")
    for name in ("holder.pid", "escaped.pid", "timed.pid"):
        pid = pid_in(ws.root / name)
        wait_for(lambda p=pid: not process_alive(p), timeout=15, what=f"{name} ended")


def test_a_state_db_made_read_only_mid_run_stops_the_controller_cleanly(make_workspace: Any) -> None:
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make the state DB immutable (root ignores file modes)")
    ws = make_workspace("")
    ledger = ws.root / "ledger.txt"
    ws.write(f"processors:\n  a:\n    command: {ledger_command(ledger)}\n")
    files = [ws.db, Path(f"{ws.db}-wal"), Path(f"{ws.db}-shm")]
    env = {"LEDGER_SLEEP": "0.5"}
    run = ws.runbook("run", "--start", "2024-01-01", "--end", "2024-01-12", "--workers", "2", "--detach", "--json",
                     check=True, env=env).json()  # fmt: skip
    wait_for(lambda: len([e for e in read_ledger(ledger) if e.kind == "end"]) >= 2, what="some dates built")
    probe = subprocess.run(["chattr", "+i", *map(str, files)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"chattr cannot make files immutable here: {probe.stderr.strip()}")
    try:
        wait_for(lambda: not process_alive(run["pid"]), timeout=60, what="controller ended")
        log = (ws.root / run["log_path"]).read_text(encoding="utf-8")
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    # Found before a write (the file turned read-only) or by the write SQLite refused: one line.
    lines = [
        line
        for line in log.splitlines()
        if "no longer writable" in line or "stopped accepting writes" in line
    ]
    assert lines, log[-2000:]
    assert "Traceback" not in log and "Bus error" not in log
    # The steps it ran were ended with it; the run shows as interrupted (its owner is gone).
    status = ws.cli("status", "--json", check=True).json()
    assert status["runs"][0]["status"] == "interrupted"
    resumed = ws.runbook("resume", str(run["run_id"]), env={"LEDGER_SLEEP": "0.05"})
    assert resumed.code == 0, resumed.stderr
    entries = read_ledger(ledger)
    assert not [e for e in entries if e.kind == "overlap"]
    assert {e.date for e in entries if e.kind == "end"} == {f"2024-01-{d:02d}" for d in range(1, 13)}


def test_a_postgresql_store_that_goes_away_mid_run_stops_the_controller_cleanly(
    make_workspace: Any, pg_url: str
) -> None:
    import psycopg

    name = pg_url.rsplit("/", 1)[1]
    admin = pg_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    ws = make_workspace("", extra_env={"RUNBOOK_DATABASE_URL": pg_url, "RUNBOOK_STORE_RETRY_SECONDS": "2"})
    ledger = ws.root / "ledger.txt"
    ws.write(f"processors:\n  a:\n    command: {ledger_command(ledger)}\n")
    controller = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", "--start", "2024-01-01", "--end", "2024-01-12", "--workers", "2",
         "--json"],
        cwd=ws.root, env={**ws.env, "LEDGER_SLEEP": "0.5"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    with psycopg.connect(admin, autocommit=True) as conn:
        try:
            wait_for(
                lambda: len([e for e in read_ledger(ledger) if e.kind == "end"]) >= 2, what="some dates built"
            )
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            _, err = controller.communicate(timeout=60)
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert controller.returncode == 6, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "state store stopped accepting writes" in err and name not in err.split("@")[0]
    run_id = 1
    log = (ws.root / "state" / "logs" / f"run-{run_id}.log").read_text(encoding="utf-8")
    assert "state store stopped accepting writes" in log
    # Its steps ended with it; once the store is back the run shows as interrupted and resumes.
    assert not [e for e in read_ledger(ledger) if e.kind == "start" and process_alive(e.pid)]
    status = ws.cli("status", "--json", check=True).json()
    assert status["runs"][0]["status"] == "interrupted"
    resumed = ws.runbook("resume", str(run_id), env={"LEDGER_SLEEP": "0.05"})
    assert resumed.code == 0, resumed.stderr
    entries = read_ledger(ledger)
    assert not [e for e in entries if e.kind == "overlap"]
    assert {e.date for e in entries if e.kind == "end"} == {f"2024-01-{d:02d}" for d in range(1, 13)}


def test_a_corrupt_state_db_is_one_line_and_exit_2_on_every_command(make_workspace: Any) -> None:
    ws = make_workspace("processors:\n  a:\n    command: 'true'\n")
    ws.db.parent.mkdir(parents=True)
    ws.db.write_bytes(b"this is not a SQLite database, it was overwritten by mistake\n" * 200)
    before = ws.db.read_bytes()
    for args in (
        ("status",), ("status", "--json"), ("history",), ("show", "1"), ("logs", "1"), ("coverage", "a"),
        ("plan", "--start", "2024-01-01", "--end", "2024-01-02"), ("handoff", "--out", "-"),
        ("run", "--start", "2024-01-01", "--end", "2024-01-02"), ("resume",), ("stop", "1"), ("worker", "--idle-exit", "1"),
        ("validate", "--start", "2024-01-01", "--end", "2024-01-02"), ("checks", "history"), ("note", "hello"), ("db", "current"),
    ):  # fmt: skip
        result = ws.runbook(*args)
        assert result.code == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, (
            args,
            result.stderr,
        )
        assert "runbook.db" in result.stderr, (args, result.stderr)
    assert ws.db.read_bytes() == before, "nothing was written over it"
