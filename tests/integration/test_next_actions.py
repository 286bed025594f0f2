"""The next-action engine, situation by situation, through the real CLI.

Each test builds a situation with real runs (real steps, a real SQLite store, DuckDB for checks),
reads ``runbook handoff --format json``, then runs every suggested command as written: those that
do work with ``--dry-run --json`` (their plan), the others as they are (they must return). The
plans together must cover exactly the work left (every expected date never built or stale), and
no plan may hold a date that is not left to do.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import days, run_row, stop_leftovers, wait_for

Work = set[tuple[str, str]]

FAILING = """
calendar: {start: 2024-01-01, end: 2024-01-10}
processors:
  a:
    command: [sh, -c, 'if [ "{{ date }}" = 2024-01-03 ] && [ -f broken ]; then echo "boom: table raw.x missing" >&2; exit 1; fi']
    retries: {attempts: 1, delay: 0s}
  b:
    needs: [a]
    command: [sh, -c, "echo b {{ date }}"]
"""


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def handoff(ws: Any) -> dict[str, Any]:
    result = ws.runbook("handoff", "--format", "json")
    assert result.code == 0, result.stderr
    data: dict[str, Any] = result.json()
    return data


def work_left(ws: Any) -> Work:
    """Every (processor, date) expected and never built, or built by an older code version."""
    found: Work = set()
    for name in ("a", "b", "source", "middle", "leaf"):
        result = ws.runbook("coverage", name, "--dates", "--json")
        if result.code != 0:
            continue
        for date in result.json()["dates"]:
            if date["expected"] and (not date["built"] or date["stale"]):
                found.add((name, date["date"]))
    return found


def plan_of(ws: Any, command: str) -> Work:
    """The (processor, date) pairs a command that does work would run (its --dry-run --json)."""
    args = shlex.split(command)
    assert args[0] == "runbook"
    result = ws.runbook(*args[1:], "--dry-run", "--json")
    assert result.code == 0, (command, result.stdout, result.stderr)
    data = result.json()
    if args[1] == "resume":
        return {
            (d["processor"], day)
            for run in data["runs"]
            for d in run["dates"]
            for day in days(d["date"], d["end_date"])
        }
    return {
        (d["processor"], day)
        for d in data["dates"]
        if d["action"] == "run"
        for day in days(d["date"], d["end_date"])
    }


def check_actions(ws: Any, data: dict[str, Any], *, left: Work | None = None) -> list[dict[str, Any]]:
    """Work first, commands that return, and plans that cover exactly the work left."""
    actions: list[dict[str, Any]] = data["next_actions"]
    order = {"work": 0, "observe": 1, "note": 2}
    assert [order[a["does"]] for a in actions] == sorted(order[a["does"]] for a in actions), actions
    left = work_left(ws) if left is None else left
    covered: Work = set()
    for action in actions:
        command = action["command"]
        if command is None:
            assert action["does"] == "note", action
            continue
        assert " -f" not in command and "--follow" not in command, command
        if action["does"] == "work":
            planned = plan_of(ws, command)
            assert planned, (command, "plans nothing")
            assert planned <= left, (command, sorted(planned - left))
            covered |= planned
        else:
            started = time.monotonic()
            result = ws.runbook(*shlex.split(command)[1:], timeout=60)
            assert result.code in (0, 3), (command, result.stdout, result.stderr)
            assert time.monotonic() - started < 60
    assert covered == left, (sorted(left - covered), sorted(covered - left))
    return actions


def test_a_persistent_error_says_fix_first_and_resume_builds_the_downstream_too(make_workspace: Any) -> None:
    ws = make_workspace(FAILING)
    (ws.root / "broken").write_text("")
    assert ws.runbook("run", "--start", "2024-01-01", "--end", "2024-01-05").code == 1

    data = handoff(ws)
    assert data["overall"]["status"] == "failed" and data["overall"]["label"] == "failed"
    assert data["overall"]["blocked_processors"] == ["b"]
    actions = check_actions(ws, data)
    first = actions[0]
    assert first["command"] == "runbook resume 1 --detach"
    assert first["text"].startswith("Fix first: a failed every attempt (2 tries) on 2024-01-03")
    assert "boom: table raw.x missing" in first["text"]
    gaps = [a for a in actions if a["situation"] == "never_built"]
    assert [a["command"] for a in gaps] == [
        "runbook run a b --only-gaps --start 2024-01-06 --end 2024-01-10 --detach"
    ]

    # After the fix, the first command as written finishes the failed date and its downstream.
    (ws.root / "broken").unlink()
    result = ws.runbook(*shlex.split(first["command"])[1:-1])  # without --detach: wait for it here
    assert result.code == 0, result.stdout + result.stderr
    assert run_row(ws.db, 1)["status"] == "succeeded"
    after = handoff(ws)
    assert after["overall"]["status"] == "incomplete"
    assert after["blocked"] == [] and after["failures"]["groups"] == []
    check_actions(ws, after)


def test_an_error_that_changes_between_attempts_is_resumed_without_fix_first(make_workspace: Any) -> None:
    ws = make_workspace(
        FAILING.replace(
            """if [ "{{ date }}" = 2024-01-03 ] && [ -f broken ]; then echo "boom: table raw.x missing" >&2; exit 1; fi""",
            """if [ "{{ date }}" = 2024-01-03 ]; then echo "timeout on attempt {{ attempt }}" >&2; exit 1; fi""",
        ).replace("2024-01-10", "2024-01-05")
    )
    assert ws.runbook("run").code == 1
    data = handoff(ws)
    actions = check_actions(ws, data)
    assert actions[0]["command"] == "runbook resume 1 --detach"
    assert "Fix first" not in actions[0]["text"]
    assert "differed between attempts" in actions[0]["text"]


def test_interrupted_run_is_resumed_where_it_stopped(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        calendar: {start: 2024-01-01, end: 2024-01-31}
        processors:
          a:
            command: [sh, -c, "sleep 0.5"]
        """
    )  # long enough to be stopped mid-way on a busy machine
    assert ws.runbook("run", "--detach").code == 0
    wait_for(
        lambda: ws.runbook("status", "--json").json()["runs"][0]["progress"]["succeeded"] >= 2, what="2 dates"
    )
    assert ws.runbook("stop", "1").code == 0
    wait_for(lambda: run_row(ws.db, 1)["status"] == "interrupted", what="interrupted")
    data = handoff(ws)
    assert data["overall"]["status"] == "interrupted"
    actions = check_actions(ws, data)
    assert actions[0]["situation"] == "interrupted"
    assert actions[0]["command"] == "runbook resume 1 --detach"


def test_a_running_run_is_watched_with_a_command_that_returns(make_workspace: Any) -> None:
    """Owned by a controller on another machine (a busy owner): watched, never resumed."""
    ws = make_workspace(
        """
        calendar: {start: 2024-01-01, end: 2024-01-20}
        processors:
          a:
            command: [sh, -c, "sleep 1"]
        """
    )
    assert ws.runbook("run", "--detach", env={"RUNBOOK_HOST": "other-host"}).code == 0
    wait_for(lambda: run_row(ws.db, 1)["status"] == "running", what="running")
    data = handoff(ws)
    assert data["overall"]["status"] == "running"
    actions = data["next_actions"]
    assert actions[0]["situation"] == "running" and actions[0]["command"] == "runbook status --json"
    assert "exits 5" in actions[0]["text"] and "runbook worker --run 1" in actions[0]["text"]
    assert all(a["does"] != "work" for a in actions), actions  # the run does the work left
    assert ws.runbook("resume", "1", "--dry-run").code == 5
    check_actions(ws, data, left=set())
    assert ws.runbook("stop", "1").code == 0


GATED = """
calendar: {start: 2024-11-01, end: 2024-11-04}
processors:
  source:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.source (game_date DATE, player STRING);
      INSERT INTO analytics.source SELECT game_date, player FROM raw.box WHERE game_date = @date
    checks:
      - name: no_duplicates
        query: |
          SELECT COUNT(*) AS duplicates FROM (
            SELECT game_date, player FROM `proj.analytics.source` WHERE game_date BETWEEN @start AND @end
            GROUP BY game_date, player HAVING COUNT(*) > 1)
        expect: ["duplicates == 0"]
  middle:
    needs: [source]
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.middle (game_date DATE, players INT64);
      INSERT INTO analytics.middle SELECT @date, COUNT(*) FROM analytics.source WHERE game_date = @date
"""


def test_a_failing_gate_names_resume_after_the_fix(make_workspace: Any) -> None:
    from runbook.warehouse.duckdb import DuckDBWarehouse

    ws = make_workspace(GATED)
    warehouse = DuckDBWarehouse(ws.root / "state/warehouse.duckdb")
    warehouse.execute("CREATE TABLE raw.box (game_date DATE, player STRING)")
    warehouse.execute(
        "INSERT INTO raw.box VALUES (DATE '2024-11-01', 'a'), (DATE '2024-11-02', 'b'), (DATE '2024-11-02', 'b'),"
        " (DATE '2024-11-03', 'c'), (DATE '2024-11-04', 'd')"
    )
    warehouse.close()
    assert ws.runbook("run").code == 3
    data = handoff(ws)
    assert data["overall"]["status"] == "blocked" and data["overall"]["label"] == "blocked by check"
    states = {p["name"]: p["status"] for phase in data["phases"] for p in phase["processors"]}
    assert states == {"source": "complete", "middle": "blocked"}  # the gate built its dates
    actions = check_actions(ws, data)
    assert actions[0]["command"] == "runbook resume 1 --detach"
    assert actions[0]["text"].startswith(
        "Fix first: blocking check source.no_duplicates failed (duplicates == 0)"
    )
    validate = [a for a in actions if a["situation"] == "gate"]
    assert (
        validate and validate[0]["command"] == "runbook validate source --start 2024-11-01 --end 2024-11-04"
    )
    # The verification query is pasteable in DuckDB: no BigQuery backticks, and it runs there.
    pasted = data["checks"][0]["filled_query"]
    assert "`" not in pasted and "'2024-11-01'" in pasted
    import duckdb

    connection = duckdb.connect(str(ws.root / "state/warehouse.duckdb"))
    try:
        assert connection.execute(pasted).fetchall() == [(1,)]
    finally:
        connection.close()


def test_stale_dates_are_rebuilt_with_only_stale(make_workspace: Any) -> None:
    config = """
        calendar: {start: 2024-01-01, end: 2024-01-06}
        processors:
          a:
            command: [sh, -c, "echo {{ date }}"]
            version: v1
        """
    ws = make_workspace(config)
    assert ws.runbook("run", "--start", "2024-01-01", "--end", "2024-01-03").code == 0
    ws.write(config.replace("v1", "v2"))
    data = handoff(ws)
    assert data["overall"]["status"] == "incomplete"
    actions = check_actions(ws, data)
    commands = [a["command"] for a in actions if a["does"] == "work"]
    assert commands == [
        "runbook run a --only-gaps --start 2024-01-04 --end 2024-01-06 --detach",
        "runbook run a --only-stale --start 2024-01-01 --end 2024-01-03 --detach",
    ]


def test_source_data_beyond_the_range_is_built_too(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        calendar: {start: 2024-01-01, end: 2024-01-03}
        processors:
          a:
            command: [sh, -c, "echo {{ date }}"]
            extent: "SELECT DATE '2024-01-01' AS first_date, DATE '2024-01-05' AS last_date"
        """
    )
    assert ws.runbook("run").code == 0
    data = handoff(ws)
    extent = [a for a in data["next_actions"] if a["situation"] == "beyond_range"]
    assert [a["command"] for a in extent] == ["runbook run a --start 2024-01-04 --end 2024-01-05 --detach"]
    assert plan_of(ws, extent[0]["command"]) == {("a", "2024-01-04"), ("a", "2024-01-05")}


def test_nothing_to_do(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        calendar: {start: 2024-01-01, end: 2024-01-03}
        processors:
          a:
            command: [sh, -c, "echo {{ date }}"]
        """
    )
    assert ws.runbook("run").code == 0
    data = handoff(ws)
    assert data["overall"]["status"] == "complete"
    actions = check_actions(ws, data)
    assert [a["situation"] for a in actions] == ["nothing_to_do"]


def test_a_live_worker_is_named_beside_its_run(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        calendar: {start: 2024-01-01, end: 2024-01-30}
        workers: 1
        processors:
          a:
            command: [sh, -c, "sleep 1"]
        """
    )
    assert ws.runbook("run", "--detach").code == 0
    wait_for(lambda: run_row(ws.db, 1)["status"] == "running", what="running")
    env = {k: v for k, v in ws.env.items()}
    worker = subprocess.Popen(
        [sys.executable, "-m", "runbook", "worker", "--run", "1", "--idle-exit", "5"],
        cwd=ws.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: "helped by 1 worker" in handoff(ws)["next_actions"][0]["text"], timeout=30, what="worker"
        )
    finally:
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        ws.runbook("stop", "1")


def test_show_json_lists_every_blocked_date(make_workspace: Any) -> None:
    """Sixty blocked dates: ``show --json`` names them all (groups of ranges, with their count)."""
    ws = make_workspace(
        """
        processors:
          a:
            command: [sh, -c, "echo no source >&2; exit 1"]
          b:
            needs: [a]
            command: [sh, -c, "echo b"]
        """
    )
    assert ws.runbook("run", "--start", "2024-01-01", "--end", "2024-02-29").code == 1
    shown = ws.runbook("show", "1", "--json").json()
    [group] = shown["blocked"]
    assert group["processor"] == "b" and group["tasks"] == 60
    assert [(r["start"], r["end"], r["dates"]) for r in group["ranges"]] == [("2024-01-01", "2024-02-29", 60)]
    brief = ws.runbook("handoff", "--format", "brief").stdout
    assert "Blocked: b 2024-01-01..2024-02-29 (60 dates): upstream a failed" in brief
    assert "Failed: a, 60 dates (2024-01-01..2024-02-29), 1 attempt: no source" in brief


PER_DATE = """
calendar: {start: 2024-11-01, end: 2024-11-04}
processors:
  source:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.source (game_date DATE, player STRING);
      DELETE FROM analytics.source WHERE game_date = @date;
      INSERT INTO analytics.source SELECT game_date, player FROM raw.box WHERE game_date = @date
    checks:
      - name: players_per_date
        per_date: true
        query: |
          SELECT game_date AS date, COUNT(*) AS players FROM `proj.analytics.source`
          WHERE game_date BETWEEN @start AND @end GROUP BY game_date
        expect: ["players >= 2"]
  middle:
    needs: [source]
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.middle (game_date DATE, players INT64);
      INSERT INTO analytics.middle SELECT @date, COUNT(*) FROM analytics.source WHERE game_date = @date
"""


def test_a_per_date_check_rebuilds_exactly_its_failing_dates_and_their_downstream(
    make_workspace: Any,
) -> None:
    import duckdb

    ws = make_workspace(PER_DATE)
    path = str(ws.root / "state" / "warehouse.duckdb")
    (ws.root / "state").mkdir()
    connection = duckdb.connect(path)
    connection.execute("CREATE SCHEMA raw; CREATE TABLE raw.box (game_date DATE, player VARCHAR)")
    for day in ("2024-11-01", "2024-11-02", "2024-11-03", "2024-11-04"):
        players = ["a"] if day == "2024-11-03" else ["a", "b"]  # 11-03 misses a player
        for player in players:
            connection.execute("INSERT INTO raw.box VALUES (?, ?)", [day, player])
    connection.close()
    assert ws.runbook("run").code == 3
    data = handoff(ws)
    assert data["overall"]["status"] == "blocked"
    work = [a for a in data["next_actions"] if a["does"] == "work"]
    assert work[0]["situation"] == "check_dates"
    assert (
        work[0]["command"]
        == "runbook run source middle --no-resume --start 2024-11-03 --end 2024-11-03 --detach"
    )
    assert plan_of(ws, work[0]["command"]) == {("source", "2024-11-03"), ("middle", "2024-11-03")}
    assert (
        "players_per_date failed on 2024-11-03" in work[1]["text"]
        and work[1]["command"] == "runbook resume 1 --detach"
    )

    # Fix the source, run the rebuild as written (in the foreground): nothing is left to do.
    connection = duckdb.connect(path)
    connection.execute("INSERT INTO raw.box VALUES ('2024-11-03', 'b')")
    connection.close()
    assert ws.runbook(*shlex.split(work[0]["command"])[1:-1]).code == 0
    after = handoff(ws)
    assert after["overall"]["status"] == "complete", after["next_actions"]
    assert [a["situation"] for a in after["next_actions"]] == ["nothing_to_do"]


def test_an_interrupted_run_with_a_persistent_error_says_fix_first(make_workspace: Any) -> None:
    from core_helpers import query

    ws = make_workspace(
        """
        calendar: {start: 2024-01-01, end: 2024-01-20}
        workers: 1
        processors:
          a:
            command: [sh, -c, 'sleep 0.3; if [ "{{ date }}" = 2024-01-02 ]; then echo "boom: disk full" >&2; exit 1; fi']
            retries: {attempts: 1, delay: 0s}
        """
    )
    assert ws.runbook("run", "--detach").code == 0
    wait_for(
        lambda: query(ws.db, "SELECT id FROM task WHERE date = '2024-01-02' AND status = 'failed'"),
        what="2024-01-02 failed twice",
    )
    assert ws.runbook("stop", "1").code == 0
    wait_for(lambda: run_row(ws.db, 1)["status"] == "interrupted", what="interrupted")
    actions = check_actions(ws, handoff(ws))
    assert actions[0]["situation"] == "interrupted" and actions[0]["command"] == "runbook resume 1 --detach"
    assert actions[0]["text"].startswith(
        "Fix first: a failed every attempt (2 tries) on 2024-01-02 with: boom: disk full"
    )
