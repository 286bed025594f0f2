"""Gates on a real DuckDB warehouse through the real CLI: a failed ``block`` check stops everything
downstream of its processor (tasks ``blocked`` with the reason, run ``blocked``, exit 3), a failed
``warn`` check does not, and a resumed run checks again and goes on once the data is fixed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from core_helpers import query, run_row, tasks

from runbook.errors import WarehouseError
from runbook.warehouse.duckdb import DuckDBWarehouse

WAREHOUSE = "state/warehouse.duckdb"

PIPELINE = """
calendar:
  start: 2024-11-01
  end: 2024-11-04
processors:
  source:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.source (game_date DATE, player STRING);
      INSERT INTO analytics.source SELECT game_date, player FROM raw.box WHERE game_date = @date
    checks:
      - name: no_duplicates
        severity: SEVERITY
        query: |
          SELECT COUNT(*) AS duplicates FROM (
            SELECT game_date, player FROM analytics.source
            WHERE game_date BETWEEN @start AND @end
            GROUP BY game_date, player HAVING COUNT(*) > 1)
        expect: ["duplicates == 0"]
  middle:
    needs: [source]
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.middle (game_date DATE, players INT64);
      INSERT INTO analytics.middle SELECT @date, COUNT(*) FROM analytics.source WHERE game_date = @date
  leaf:
    needs: [middle]
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.leaf (game_date DATE);
      INSERT INTO analytics.leaf SELECT game_date FROM analytics.middle WHERE game_date = @date
  side:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.side (game_date DATE);
      INSERT INTO analytics.side VALUES (@date)
"""


def with_duplicates(make_workspace: Any, severity: str) -> Any:
    ws = make_workspace(PIPELINE.replace("SEVERITY", severity))
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        warehouse.execute("CREATE TABLE raw.box (game_date DATE, player STRING)")
        warehouse.execute(
            "INSERT INTO raw.box VALUES (DATE '2024-11-01', 'a'), (DATE '2024-11-02', 'b'), "
            "(DATE '2024-11-02', 'b'), (DATE '2024-11-03', 'c'), (DATE '2024-11-04', 'd')"
        )
    finally:
        warehouse.close()
    return ws


def table_rows(ws: Any, table: str) -> int | None:
    """Rows of analytics.TABLE, None when the table was never created."""
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        return int(warehouse.query(f"SELECT COUNT(*) AS n FROM analytics.{table}")[0]["n"])
    except WarehouseError as exc:
        assert "does not exist" in str(exc)
        return None
    finally:
        warehouse.close()


def test_a_failed_block_check_blocks_everything_downstream(make_workspace: Any) -> None:
    ws = with_duplicates(make_workspace, "block")

    result = ws.runbook("run")
    assert result.code == 3, result.stdout + result.stderr
    shown = " ".join(result.stdout.split())
    assert "blocking check failed on source: no_duplicates: duplicates == 0 (1 == 0)" in shown

    run = run_row(ws.db, 1)
    assert run["status"] == "blocked"
    by_processor: dict[str, Counter[str]] = {}
    for task in tasks(ws.db, 1):
        by_processor.setdefault(task["processor"], Counter())[task["status"]] += 1
        if task["status"] == "blocked":
            assert task["error_tail"] == "blocked by gate: no_duplicates: duplicates == 0 (1 == 0)"
    assert by_processor == {
        "source": Counter(succeeded=4),
        "middle": Counter(blocked=4),
        "leaf": Counter(blocked=4),
        "side": Counter(succeeded=4),  # not downstream of the gate: it runs
    }
    assert table_rows(ws, "middle") is None and table_rows(ws, "leaf") is None  # never ran
    assert table_rows(ws, "side") == 4

    events = query(ws.db, "SELECT kind, processor, message FROM event WHERE run_id = 1 ORDER BY id")
    kinds = [e["kind"] for e in events]
    assert "check_failed" in kinds and "gate_blocked" in kinds and kinds[-1] == "run_blocked"

    # Fix the data; resuming the run checks again, passes the gate and builds the rest.
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        warehouse.execute(
            "DELETE FROM analytics.source WHERE game_date = DATE '2024-11-02';"
            "INSERT INTO analytics.source VALUES (DATE '2024-11-02', 'b')"
        )
    finally:
        warehouse.close()
    resumed = ws.runbook("resume", "1")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    assert Counter(t["status"] for t in tasks(ws.db, 1)) == {"succeeded": 16}
    assert table_rows(ws, "leaf") == 4
    checks = query(ws.db, "SELECT run_id, passed FROM check_result ORDER BY id")
    assert checks == [{"run_id": 1, "passed": 0}, {"run_id": 1, "passed": 1}]


def test_a_failed_warn_check_is_recorded_and_shown_and_work_goes_on(make_workspace: Any) -> None:
    ws = with_duplicates(make_workspace, "warn")

    result = ws.runbook("run")
    assert result.code == 0, result.stdout + result.stderr
    shown = " ".join(result.stdout.split())
    assert "check source.no_duplicates (warn) FAILED: duplicates == 0 (1 == 0)" in shown

    assert run_row(ws.db, 1)["status"] == "succeeded"
    assert Counter(t["status"] for t in tasks(ws.db, 1)) == {"succeeded": 16}
    assert table_rows(ws, "leaf") == 4
    (check,) = query(ws.db, "SELECT check_name, severity, passed, run_id FROM check_result")
    assert check == {"check_name": "no_duplicates", "severity": "warn", "passed": 0, "run_id": 1}
    assert [e["kind"] for e in query(ws.db, "SELECT kind FROM event WHERE kind LIKE 'gate%'")] == []


@pytest.mark.parametrize("severity", ["block", "warn"])
def test_the_json_outcome_of_a_gated_run(make_workspace: Any, severity: str) -> None:
    ws = with_duplicates(make_workspace, severity)
    result = ws.runbook("run", "middle", "source", "--json")
    view = result.json()
    assert view["run"]["status"] == ("blocked" if severity == "block" else "succeeded")
    assert result.code == (3 if severity == "block" else 0)
    blocked = [(b["processor"], b["tasks"], b["reason"].split(":")[0]) for b in view["blocked"]]
    assert blocked == ([("middle", 4, "blocked by gate")] if severity == "block" else [])
    assert [(c["processor"], c["check"], c["severity"], c["passed"]) for c in view["checks"]] == [
        ("source", "no_duplicates", severity, False)
    ]


def test_warn_only_checks_do_not_gate_the_downstream(make_workspace: Any) -> None:
    """With only warn checks, `middle` pipelines by date: it starts before `source` has finished."""
    ws = with_duplicates(make_workspace, "warn")
    result = ws.runbook("run", "source", "middle", "--workers", "1")
    assert result.code == 0, result.stdout + result.stderr
    rows = {(t["processor"], t["date"]): t for t in tasks(ws.db, 1)}
    last_source_finish = max(t["finished_at"] for (name, _), t in rows.items() if name == "source")
    first_middle_start = min(t["started_at"] for (name, _), t in rows.items() if name == "middle")
    assert first_middle_start < last_source_finish  # no barrier after source
    (check,) = query(ws.db, "SELECT check_name, passed, run_id FROM check_result")
    assert check == {"check_name": "no_duplicates", "passed": 0, "run_id": 1}  # still run, at the end


def test_a_block_check_is_a_barrier_for_the_downstream(make_workspace: Any) -> None:
    ws = make_workspace(PIPELINE.replace("SEVERITY", "block"))
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        warehouse.execute("CREATE TABLE raw.box (game_date DATE, player STRING)")
        warehouse.execute(
            "INSERT INTO raw.box VALUES (DATE '2024-11-01', 'a'), (DATE '2024-11-02', 'b'), "
            "(DATE '2024-11-03', 'c'), (DATE '2024-11-04', 'd')"
        )
    finally:
        warehouse.close()
    result = ws.runbook("run", "source", "middle", "--workers", "1")
    assert result.code == 0, result.stdout + result.stderr
    rows = tasks(ws.db, 1)
    last_source_finish = max(t["finished_at"] for t in rows if t["processor"] == "source")
    first_middle_start = min(t["started_at"] for t in rows if t["processor"] == "middle")
    assert first_middle_start > last_source_finish


def test_a_date_skipped_for_missing_upstream_data_is_skipped_downstream(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        calendar: {start: 2024-11-01, end: 2024-11-03}
        processors:
          gated:
            ready: [{table: "proj.raw.box", date_column: game_date}]
            sql: "CREATE TABLE IF NOT EXISTS analytics.g AS SELECT 1 AS x"
          after:
            needs: [gated]
            sql: "CREATE TABLE IF NOT EXISTS analytics.a AS SELECT 1 AS x"
        """
    )
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        warehouse.execute("CREATE TABLE raw.box (game_date DATE)")
        warehouse.execute("INSERT INTO raw.box VALUES (DATE '2024-11-01'), (DATE '2024-11-03')")
    finally:
        warehouse.close()
    result = ws.runbook("run")
    assert result.code == 0, result.stdout + result.stderr
    by_key = {(t["processor"], t["date"]): (t["status"], t["skip_reason"]) for t in tasks(ws.db, 1)}
    assert by_key[("gated", "2024-11-02")] == ("skipped", "upstream_missing")
    assert by_key[("after", "2024-11-02")] == ("skipped", "upstream_missing")
    assert by_key[("after", "2024-11-03")] == ("succeeded", None)
    assert run_row(ws.db, 1)["status"] == "succeeded"
