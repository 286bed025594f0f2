"""Validation checks on a real DuckDB warehouse through the real CLI: what is stored for each
severity, ``runbook validate``, ``runbook checks history`` over two runs, config errors in
conditions, failing queries, and dates that arrive as bound parameters, never as SQL text.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from core_helpers import query

from runbook.checks.readiness import TableReadiness
from runbook.config import parse_config
from runbook.warehouse.duckdb import DuckDBWarehouse

WAREHOUSE = "state/warehouse.duckdb"
DATES = [dt.date(2024, 11, 1) + dt.timedelta(days=n) for n in range(7)]
GAME_DAYS = [day for day in DATES if day != dt.date(2024, 11, 6)]  # Nov 6 is an off-day

CHECKS = """
calendar:
  start: 2024-11-01
  end: 2024-11-07
  off_days: [2024-11-06]
processors:
  player_game_summary:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.pgs (game_date DATE, player STRING, minutes INT64, usage_rate FLOAT64);
      DELETE FROM analytics.pgs WHERE game_date = @date;
      INSERT INTO analytics.pgs SELECT game_date, player, minutes, usage_rate FROM raw.box WHERE game_date = @date
    checks:
      - name: usage_rate_coverage
        severity: block
        query: |
          SELECT COUNT(*) AS total_records,
                 ROUND(100 * SAFE_DIVIDE(COUNTIF(usage_rate IS NOT NULL), COUNT(*)), 1) AS pct_populated
          FROM `demo-project.analytics.pgs` WHERE game_date BETWEEN @start AND @end
        expect: ["pct_populated >= 40"]
      - name: minutes_coverage
        severity: warn
        query: |
          SELECT ROUND(100 * SAFE_DIVIDE(COUNTIF(minutes IS NOT NULL), COUNT(*)), 1) AS pct_populated
          FROM analytics.pgs WHERE game_date BETWEEN @start AND @end
        expect: ["pct_populated >= 99"]
      - name: date_coverage
        query: SELECT COUNT(DISTINCT game_date) AS dates FROM analytics.pgs WHERE game_date BETWEEN @start AND @end
        expect: ["dates >= 0.9 * expected_dates", "dates <= calendar_dates", "range_days == 7"]
"""


def warehouse(ws: Any) -> DuckDBWarehouse:
    return DuckDBWarehouse(ws.root / WAREHOUSE)


def seed(ws: Any, *statements: str) -> None:
    wh = warehouse(ws)
    try:
        for sql in statements:
            wh.execute(sql)
    finally:
        wh.close()


def seed_box(ws: Any, rows: list[dict[str, Any]]) -> None:
    wh = warehouse(ws)
    try:
        wh.execute(
            "CREATE TABLE IF NOT EXISTS raw.box (game_date DATE, player STRING, minutes INT64, usage_rate FLOAT64)"
        )
        wh.load_rows("raw.box", rows)
    finally:
        wh.close()


def first_week(ws: Any) -> None:
    """One row per game date except the off-day: 3 of 6 with usage_rate (50 %), 5 of 6 with minutes."""
    seed_box(
        ws,
        [
            {
                "game_date": day,
                "player": f"p{i}",
                "minutes": None if i == 0 else 30,
                "usage_rate": 20.0 if i < 3 else None,
            }
            for i, day in enumerate(GAME_DAYS)
        ],
    )


def results(ws: Any, **where: Any) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{key} IS ?" for key in where) or "1=1"
    rows = query(ws.db, f"SELECT * FROM check_result WHERE {clause} ORDER BY id", tuple(where.values()))
    for row in rows:
        for key in ("metrics", "conditions", "params"):
            row[key] = json.loads(row[key])
    return rows


def test_each_severity_is_run_stored_and_shown_after_the_processor(make_workspace: Any) -> None:
    ws = make_workspace(CHECKS)
    first_week(ws)

    result = ws.runbook("run")
    assert result.code == 0, result.stdout + result.stderr  # a failed warn check does not stop the run
    shown = " ".join(result.stdout.split())  # the progress display wraps long lines
    assert (
        "check player_game_summary.minutes_coverage (warn) FAILED: pct_populated >= 99 (83.3 >= 99)" in shown
    )
    assert "check player_game_summary.usage_rate_coverage (block) passed" in shown

    stored = {row["check_name"]: row for row in results(ws)}
    assert set(stored) == {"usage_rate_coverage", "minutes_coverage", "date_coverage"}
    usage = stored["usage_rate_coverage"]
    assert (usage["run_id"], usage["processor"], usage["severity"], usage["passed"]) == (
        1,
        "player_game_summary",
        "block",
        1,
    )
    assert usage["metrics"] == {"total_records": 6, "pct_populated": 50.0}
    assert usage["conditions"] == [
        {"expr": "pct_populated >= 40", "left": 50.0, "op": ">=", "right": 40, "passed": True}
    ]
    assert usage["params"] == {"start": "2024-11-01", "end": "2024-11-07"}
    assert (usage["start_date"], usage["end_date"]) == ("2024-11-01", "2024-11-07")
    assert "COUNTIF(usage_rate IS NOT NULL)" in usage["query"]
    assert usage["error"] is None and usage["at"]

    minutes = stored["minutes_coverage"]
    assert (minutes["severity"], minutes["passed"]) == ("warn", 0)
    assert minutes["conditions"][0]["left"] == 83.3

    coverage = stored["date_coverage"]
    assert coverage["passed"] == 1
    # expected_dates and calendar_dates leave out the off-day; range_days does not.
    assert [(c["left"], c["right"]) for c in coverage["conditions"]] == [
        (6, pytest.approx(5.4)),
        (6, 6),
        (7, 7),
    ]

    events = query(ws.db, "SELECT kind, processor, message FROM event WHERE kind LIKE 'check_%' ORDER BY id")
    assert [e["kind"] for e in events] == ["check_passed", "check_failed", "check_passed"]
    log = (ws.root / "state" / "logs" / "run-1.log").read_text()
    assert "check player_game_summary.minutes_coverage (warn) FAILED" in log


def test_validate_runs_checks_on_demand_and_exits_3_when_a_blocking_check_fails(make_workspace: Any) -> None:
    ws = make_workspace(CHECKS)
    first_week(ws)
    assert ws.runbook("run").code == 0

    ok = ws.cli("validate", "--json")
    assert ok.code == 0, ok.stderr  # only the warn check fails
    view = ok.json()
    assert (view["start"], view["end"], view["passed"], view["blocking_failures"]) == (
        "2024-11-01",
        "2024-11-07",
        False,
        [],
    )
    assert [(r["check"], r["passed"], r["run_id"]) for r in view["results"]] == [
        ("usage_rate_coverage", True, None),
        ("minutes_coverage", False, None),
        ("date_coverage", True, None),
    ]
    assert len(results(ws, run_id=None)) == 3

    seed(ws, "UPDATE analytics.pgs SET usage_rate = NULL WHERE game_date <= DATE '2024-11-02'")
    blocked = ws.cli("validate", "player_game_summary", "--start", "2024-11-01", "--end", "2024-11-03")
    assert blocked.code == 3
    assert (
        "FAIL  player_game_summary.usage_rate_coverage (block): pct_populated >= 40 (33.3 >= 40)"
        in blocked.stdout
    )
    # Only the failed condition is shown: range_days is 3 for this range.
    assert "FAIL  player_game_summary.date_coverage (block): range_days == 7 (3 == 7)" in blocked.stdout
    assert "3 check(s): 0 passed, 3 failed (2 blocking)" in blocked.stdout
    latest = results(ws, run_id=None)[-3]
    assert (latest["check_name"], latest["passed"], latest["params"]) == (
        "usage_rate_coverage",
        0,
        {"start": "2024-11-01", "end": "2024-11-03"},
    )

    unknown = ws.cli("validate", "nope")
    assert unknown.code == 2 and "unknown processor 'nope'" in unknown.stderr


def test_check_history_shows_values_changing_between_runs(make_workspace: Any) -> None:
    ws = make_workspace(CHECKS.replace("pct_populated >= 40", "pct_populated >= 45"))
    # Run 1: 3 of 7 rows with usage_rate -> 42.9 %, under the threshold: the run is blocked.
    seed_box(
        ws,
        [
            {
                "game_date": GAME_DAYS[i % 6],
                "player": f"p{i}",
                "minutes": 30,
                "usage_rate": 1.0 if i < 3 else None,
            }
            for i in range(7)
        ],
    )
    first = ws.runbook("run")
    assert first.code == 3, first.stdout + first.stderr

    # The missing rows arrive: 23 of 48 -> 47.9 %.
    seed_box(
        ws,
        [
            {
                "game_date": GAME_DAYS[i % 5],
                "player": f"q{i}",
                "minutes": 30,
                "usage_rate": 1.0 if i < 20 else None,
            }
            for i in range(41)
        ],
    )
    second = ws.runbook("run", "--no-resume")
    assert second.code == 0, second.stdout + second.stderr

    history = ws.cli("checks", "history", "usage_rate_coverage", "--json")
    assert history.code == 0, history.stderr
    (entry,) = history.json()["checks"]
    assert (entry["processor"], entry["check"], entry["severity"]) == (
        "player_game_summary",
        "usage_rate_coverage",
        "block",
    )
    assert entry["series"] == {"total_records": [7, 48], "pct_populated": [42.9, 47.9]}
    assert [(r["run_id"], r["passed"]) for r in entry["results"]] == [(1, False), (2, True)]

    human = ws.cli("checks", "history", "usage_rate_coverage")
    assert "pct_populated: 42.9 -> 47.9" in human.stdout
    assert "player_game_summary.usage_rate_coverage (block)" in human.stdout

    everything = ws.runbook(
        "checks", "history", "--processor", "player_game_summary", "--limit", "1", "--json"
    ).json()
    assert {c["check"]: len(c["results"]) for c in everything["checks"]} == {
        "usage_rate_coverage": 1,
        "minutes_coverage": 1,
        "date_coverage": 1,
    }
    assert ws.cli("checks", "history", "no_such_check", "--json").json()["checks"] == []


def test_a_condition_naming_an_unknown_value_is_a_config_error(make_workspace: Any) -> None:
    ws = make_workspace(CHECKS.replace('["pct_populated >= 40"]', '["pct_populatd >= 40"]'))
    first_week(ws)
    # In a run the check fails with the message recorded, and as a block check it blocks.
    run = ws.runbook("run")
    assert run.code == 3
    stored = results(ws, run_id=1)[0]
    assert stored["passed"] == 0 and "unknown name 'pct_populatd'" in stored["error"]

    result = ws.cli("validate")
    assert result.code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "processors.player_game_summary.checks.0.expect.0" in line
    assert "check 'usage_rate_coverage'" in line and "unknown name 'pct_populatd'" in line
    assert "total_records, pct_populated" in line  # the metrics the query did return


def test_a_condition_outside_the_grammar_is_refused_before_any_query(make_workspace: Any) -> None:
    condition = "__import__('os').system('touch hacked') == 0"
    ws = make_workspace(CHECKS.replace('["pct_populated >= 40"]', json.dumps([condition])))
    for args in (("validate",), ("run", "--start", "2024-01-01", "--end", "2024-01-07")):
        result = ws.runbook(*args)
        assert result.code == 2
        assert "runbook.yaml: processors.player_game_summary.checks.0.expect.0: " in result.stderr
        assert "is not allowed (allowed: names, numbers" in result.stderr
    assert not (ws.root / "hacked").exists()
    assert not ws.db.exists()  # refused when the config is loaded: nothing was recorded


def test_a_failing_or_malformed_check_query_is_a_failed_check_with_its_error(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        processors:
          p:
            sql: SELECT 1
            checks:
              - name: missing_table
                query: SELECT COUNT(*) AS n FROM raw.nothing_here WHERE d BETWEEN @start AND @end
                expect: ["n > 0"]
              - name: two_rows
                severity: warn
                query: SELECT 1 AS n UNION ALL SELECT 2
                expect: ["n > 0"]
        """
    )
    seed(ws, "CREATE TABLE raw.other (d DATE)")
    result = ws.cli("validate", "--start", "2024-11-01", "--end", "2024-11-01", "--json")
    assert result.code == 3
    by_name = {r["check"]: r for r in result.json()["results"]}
    assert by_name["missing_table"]["passed"] is False
    assert "nothing_here" in by_name["missing_table"]["error"]
    assert by_name["two_rows"]["error"] == "the check query returned 2 rows; it must return exactly one"
    assert result.json()["blocking_failures"][0].startswith("missing_table: ")


def test_dates_are_bound_parameters_never_sql_text(make_workspace: Any) -> None:
    ws = make_workspace(CHECKS)
    first_week(ws)
    evil = "2024-01-01' OR '1'='1"

    refused = ws.cli("validate", "--start", evil, "--end", "2024-11-07")
    assert refused.code == 2
    assert "Traceback" not in refused.stderr and "--start" in refused.stderr
    assert ws.runbook("run", "--start", evil).code == 2

    # Handed to the warehouse as a parameter, the same text is only ever a value to compare with.
    wh = warehouse(ws)
    try:
        sql = "SELECT COUNT(*) AS n FROM raw.box WHERE CAST(game_date AS STRING) = @start"
        assert wh.query(sql, {"start": "2024-11-01"}) == [{"n": 1}]
        assert wh.query(sql, {"start": evil}) == [{"n": 0}]
    finally:
        wh.close()

    # Readiness takes the dates of tasks: anything that is not an ISO date is refused.
    config = parse_config(
        {
            "processors": {
                "p": {"sql": "SELECT 1", "ready": [{"table": "raw.box", "date_column": "game_date"}]}
            }
        },
        "runbook.yaml",
    )
    readiness = TableReadiness(config, lambda: pytest.fail("the warehouse must not be queried"))
    with pytest.raises(ValueError):
        readiness.missing("p", evil, "2024-11-07")
