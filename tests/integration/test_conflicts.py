"""Two runs over the same work: refused while the first one's controller lives, unless forced;
runs over other processors or other dates go ahead."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import process_alive, query, run_row, stop_leftovers, tasks, wait_for

# `slow` sleeps $SLOW seconds: only the detached run gets SLOW in its environment.
CONFIG = """
processors:
  slow:
    command: [sh, -c, "echo slow {{ date }} >> runs.txt; sleep ${SLOW:-0} & wait"]
  fast:
    command: [sh, -c, "echo fast {{ date }} >> runs.txt"]
"""


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def run_ids(db: Path) -> list[int]:
    return [row["id"] for row in query(db, "SELECT id FROM run ORDER BY id")]


def test_overlapping_run_is_refused_unless_forced(make_workspace: Any) -> None:
    ws = make_workspace(CONFIG)
    first = ws.runbook(
        "run", "slow", "--start", "2024-01-01", "--end", "2024-01-05", "--detach", "--json",
        check=True, env={"SLOW": "30"},
    ).json()  # fmt: skip
    run_id, pid = first["run_id"], first["pid"]
    wait_for(lambda: any(t["status"] == "running" for t in tasks(ws.db, run_id)), what="first run busy")

    for args in (
        ("slow", "--start", "2024-01-05", "--end", "2024-01-09"),
        ("--start", "2024-01-03", "--end", "2024-01-03"),
    ):
        refused = ws.runbook("run", *args)
        assert refused.code == 2, refused.stdout + refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
        assert f"run {run_id} " in refused.stderr and f"PID {pid}" in refused.stderr
        assert "--force" in refused.stderr
    assert run_ids(ws.db) == [run_id], "a refused run records nothing"

    other_processor = ws.runbook("run", "fast", "--start", "2024-01-01", "--end", "2024-01-05")
    assert other_processor.code == 0, other_processor.stderr
    other_dates = ws.runbook("run", "slow", "--start", "2024-01-06", "--end", "2024-01-07")
    assert other_dates.code == 0, other_dates.stderr
    forced = ws.runbook("run", "slow", "--start", "2024-01-02", "--end", "2024-01-02", "--force")
    assert forced.code == 0, forced.stderr
    ids = run_ids(ws.db)
    assert len(ids) == 4 and all(run_row(ws.db, i)["status"] == "succeeded" for i in ids[1:])
    assert run_row(ws.db, run_id)["status"] == "running" and process_alive(pid)

    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not process_alive(pid), timeout=20, what="first controller stopped")
    assert run_row(ws.db, run_id)["status"] == "interrupted"
    # Once the first run is no longer live, the same work may start again.
    after = ws.runbook("run", "slow", "--start", "2024-01-05", "--end", "2024-01-05")
    assert after.code == 0, after.stderr
