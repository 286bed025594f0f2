"""Per-date checks on a real DuckDB warehouse through the real CLI: each date judged on its own,
the failing dates as ranges with their values, a blocking per-date check that blocks the
downstream of exactly those dates, baselines from history, the before/after of a rebuild, sample
rows, and the ready-made volume and freshness kinds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from core_helpers import query

from runbook.warehouse.duckdb import DuckDBWarehouse

WAREHOUSE = "state/warehouse.duckdb"
START = dt.date(2024, 11, 1)
DATES = [START + dt.timedelta(days=n) for n in range(10)]  # 2024-11-01 .. 2024-11-10
BAD_DAY = dt.date(2024, 11, 4)  # usage_rate missing on every row of this date

PIPELINE = """
calendar:
  start: 2024-11-01
  end: 2024-11-10
processors:
  player_game_summary:
    check_batch_days: 3
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.pgs (game_date DATE, player STRING, usage_rate FLOAT64, note STRING);
      DELETE FROM analytics.pgs WHERE game_date = @date;
      INSERT INTO analytics.pgs SELECT game_date, player, usage_rate, note FROM raw.box WHERE game_date = @date
    checks:
      - name: usage_rate_coverage
        per_date: true
        query: |
          SELECT game_date AS date, COUNT(*) AS total_records,
                 ROUND(100 * SAFE_DIVIDE(COUNTIF(usage_rate IS NOT NULL), COUNT(*)), 1) AS pct_populated
          FROM analytics.pgs WHERE game_date BETWEEN @start AND @end GROUP BY game_date
        expect: ["pct_populated >= 40"]
        sample: |
          SELECT player, note FROM analytics.pgs
          WHERE game_date = @date AND usage_rate IS NULL ORDER BY player
  rollup:
    needs: [player_game_summary]
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.rollup (game_date DATE, players INT64);
      DELETE FROM analytics.rollup WHERE game_date = @date;
      INSERT INTO analytics.rollup SELECT game_date, COUNT(*) FROM analytics.pgs WHERE game_date = @date GROUP BY 1
"""


def warehouse(ws: Any) -> DuckDBWarehouse:
    return DuckDBWarehouse(ws.root / WAREHOUSE)


def seed(ws: Any, *statements: str, rows: list[dict[str, Any]] | None = None) -> None:
    wh = warehouse(ws)
    try:
        wh.execute(
            "CREATE TABLE IF NOT EXISTS raw.box (game_date DATE, player STRING, usage_rate FLOAT64, note STRING)"
        )
        if rows:
            wh.load_rows("raw.box", rows)
        for sql in statements:
            wh.execute(sql)
    finally:
        wh.close()


def box(days: list[dt.date], players: int = 4, bad: dt.date | None = BAD_DAY) -> list[dict[str, Any]]:
    """``players`` rows per date, all with usage_rate except on ``bad``; notes hold a secret and a long text."""
    return [
        {
            "game_date": day,
            "player": f"p{i}",
            "usage_rate": None if day == bad else 20.0,
            "note": f"api_key=sk-{i}-hunter2 " + "x" * 300 if i == 0 else "ok",
        }
        for day in days
        for i in range(players)
    ]


def dated(ws: Any) -> list[dict[str, Any]]:
    rows = query(ws.db, "SELECT * FROM check_date ORDER BY id")
    for row in rows:
        row["metrics"] = json.loads(row["metrics"])
    return rows


def test_a_failing_date_blocks_only_its_own_downstream(make_workspace: Any) -> None:
    ws = make_workspace(PIPELINE)
    seed(ws, rows=box(DATES))

    result = ws.runbook("run")
    failed = query(ws.db, "SELECT processor, date, error_tail FROM task WHERE status = 'failed'")
    assert result.code == 3, (result.stdout, result.stderr, failed)  # blocked by a failing block check
    # On the terminal a window that passed is one line; a failing one names its dates and values.
    assert "player_game_summary 2024-11-01..2024-11-03: 1 per-date check(s) passed, downstream released" in (
        result.stdout
    )
    assert (
        "usage_rate_coverage (block) FAILED: 2024-11-04..2024-11-06: failed on 1 of 3 date(s)"
        in result.stdout
    )

    tasks = {
        (t["processor"], t["date"]): t
        for t in query(ws.db, "SELECT processor, date, status, error_tail FROM task WHERE run_id = 1")
    }
    assert all(tasks[("player_game_summary", d.isoformat())]["status"] == "succeeded" for d in DATES)
    for day in DATES:
        rollup = tasks[("rollup", day.isoformat())]
        if day == BAD_DAY:
            assert rollup["status"] == "blocked"
            assert "usage_rate_coverage on 2024-11-04" in rollup["error_tail"]
            assert "pct_populated >= 40 (0 >= 40)" in rollup["error_tail"]
        else:
            assert rollup["status"] == "succeeded", (day, rollup)

    # One gate per window of 3 days; each window's result is stored with its dates.
    gates = query(ws.db, "SELECT start_date, end_date, status FROM gate WHERE run_id = 1 ORDER BY start_date")
    assert [(g["start_date"], g["end_date"]) for g in gates] == [
        ("2024-11-01", "2024-11-03"),
        ("2024-11-04", "2024-11-06"),
        ("2024-11-07", "2024-11-09"),
        ("2024-11-10", "2024-11-10"),
    ]
    assert [g["status"] for g in gates] == ["passed", "failed", "passed", "passed"]
    stored = dated(ws)
    assert sorted(row["date"] for row in stored) == [d.isoformat() for d in DATES]
    bad = next(row for row in stored if row["date"] == "2024-11-04")
    assert (bad["passed"], bad["metrics"]) == (0, {"total_records": 4, "pct_populated": 0.0})

    # show: the merged per-date result names the failing date with its value, and a sample row.
    shown = ws.cli("show", "1")
    assert "player_game_summary.usage_rate_coverage (block): failed on 1 of 10 date(s)" in shown.stdout
    assert "2024-11-04: pct_populated >= 40 (0 >= 40)" in shown.stdout
    assert "sample rows 2024-11-04" in shown.stdout
    assert "hunter2" not in shown.stdout and "api_key=***" in shown.stdout
    detail = ws.cli("show", "1", "--json").json()
    (check,) = detail["checks"]
    assert (check["per_date"], check["passed"], check["start_date"], check["end_date"]) == (
        True,
        False,
        "2024-11-01",
        "2024-11-10",
    )
    assert check["metrics"] == {"dates": 10, "passed_dates": 9, "failed_dates": 1}
    (failed,) = check["failed_dates"]
    assert (failed["start"], failed["end"], failed["dates"], failed["failed"]) == (
        "2024-11-04",
        "2024-11-04",
        1,
        ["pct_populated >= 40"],
    )
    assert failed["values"] == {"pct_populated": {"min": 0.0, "max": 0.0}}
    (sample,) = check["samples"]
    assert sample["date"] == "2024-11-04" and len(sample["rows"]) == 4
    note = sample["rows"][0]["note"]
    assert "hunter2" not in note and len(note) <= 120 and note.endswith("…")

    # The handoff shows the failing date, not only a verdict.
    handoff = ws.cli("handoff", "--out", "-")
    assert "- 2024-11-04: pct_populated >= 40 (0 >= 40)" in handoff.stdout
    assert "1 of 10 dates failed" in handoff.stdout
    assert "Sample rows for 2024-11-04" in handoff.stdout
    assert "hunter2" not in handoff.stdout
    brief = ws.cli("handoff", "--format", "brief", "--out", "-").stdout
    assert (
        "Failing check: player_game_summary.usage_rate_coverage (block): failed on 1 of 10 dates: "
        "2024-11-04: pct_populated >= 40 (0 >= 40)"
    ) in brief

    log = (ws.root / "state" / "logs" / "run-1.log").read_text()
    assert (
        "check player_game_summary.usage_rate_coverage (block) FAILED: 2024-11-04..2024-11-06: "
        "failed on 1 of 3 date(s): 2024-11-04: pct_populated >= 40 (0 >= 40)"
    ) in log
    assert "check player_game_summary.usage_rate_coverage (block) passed: 2024-11-01..2024-11-03" in log
    events = query(ws.db, "SELECT message FROM event WHERE kind = 'gate_blocked'")
    assert [e["message"].split(";")[0] for e in events] == [
        "blocking check failed on player_game_summary for 1 date(s) (2024-11-04): the downstream of those "
        "dates is blocked, other dates go on"
    ]
    # Each judged window is an event: passing windows have a kind of their own, which the handoff's
    # timeline leaves out (its Validation section sums them up); the failing one stays.
    kinds = [e["kind"] for e in query(ws.db, "SELECT kind FROM event WHERE kind LIKE 'check%' ORDER BY id")]
    assert kinds == ["check_window_passed", "check_failed", "check_window_passed", "check_window_passed"]
    timeline = ws.cli("handoff", "--format", "json").json()["timeline"]["events"]
    assert "check_window_passed" not in {e["kind"] for e in timeline}
    assert {"run_created", "check_failed", "gate_blocked"} <= {e["kind"] for e in timeline}

    # The run's verdict counts every window, not only the newest one.
    (run,) = ws.cli("status", "--json").json()["runs"]
    assert run["checks"]["failing"] == ["player_game_summary.usage_rate_coverage"]

    # coverage: only the failing date is marked, not the whole window of its gate.
    coverage = ws.cli("coverage", "player_game_summary", "--json").json()
    assert [(c["check"], c["start"], c["end"]) for c in coverage["failing_checks"]] == [
        ("usage_rate_coverage", "2024-11-04", "2024-11-04")
    ]

    # Fix the data, resume: the failed window is judged again and its blocked date goes on.
    seed(ws, "UPDATE raw.box SET usage_rate = 25 WHERE game_date = DATE '2024-11-04'")
    seed(ws, "UPDATE analytics.pgs SET usage_rate = 25 WHERE game_date = DATE '2024-11-04'")
    resumed = ws.runbook("resume", "1")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    status = query(
        ws.db, "SELECT status FROM task WHERE run_id = 1 AND processor = 'rollup' AND date = '2024-11-04'"
    )
    assert status == [{"status": "succeeded"}]
    again = ws.cli("show", "1", "--json").json()["checks"][0]
    assert (again["passed"], again["failed_dates"]) == (True, [])


def test_validate_names_failing_dates_as_ranges_and_history_lists_them(make_workspace: Any) -> None:
    ws = make_workspace(PIPELINE)
    seed(ws, rows=box(DATES, bad=None))
    assert ws.runbook("run").code == 0
    # Three consecutive dates lose usage_rate, one more later: two ranges with their values.
    seed(
        ws,
        "UPDATE analytics.pgs SET usage_rate = NULL WHERE game_date BETWEEN DATE '2024-11-03' AND DATE '2024-11-05'",
        "UPDATE analytics.pgs SET usage_rate = NULL WHERE game_date = DATE '2024-11-08' AND player <> 'p0'",
    )
    found = ws.cli("validate", "--json")
    assert found.code == 3
    view = found.json()
    (result,) = view["results"]
    assert [(r["start"], r["end"], r["dates"]) for r in result["failed_dates"]] == [
        ("2024-11-03", "2024-11-05", 3),
        ("2024-11-08", "2024-11-08", 1),
    ]
    assert result["failed_dates"][1]["text"] == "2024-11-08: pct_populated >= 40 (25 >= 40)"
    assert view["blocking_failures"] == [
        "usage_rate_coverage: failed on 4 of 10 date(s): 2024-11-03..2024-11-05 (3 dates): "
        "pct_populated >= 40; pct_populated 0; 2024-11-08: pct_populated >= 40 (25 >= 40)"
    ]
    assert [s["date"] for s in result["samples"]] == ["2024-11-03", "2024-11-04", "2024-11-05", "2024-11-08"]

    text = ws.cli("validate")
    assert "failed on 4 of 10 date(s)" in text.stdout
    assert "2024-11-03..2024-11-05 (3 dates): pct_populated >= 40; pct_populated 0" in text.stdout

    history = ws.cli("checks", "history", "usage_rate_coverage")
    assert "failed 2024-11-03..2024-11-05 (3 dates)" in history.stdout
    entry = ws.cli("checks", "history", "--json").json()["checks"][0]
    assert entry["results"][-1]["failed_dates"][0]["start"] == "2024-11-03"


BASELINES = """
calendar:
  start: 2024-11-01
  end: 2024-11-28
processors:
  player_game_summary:
    sql: SELECT 1
    checks:
      - name: volume
        kind: volume
        table: raw.box
        severity: warn
      - name: usage_vs_history
        per_date: true
        severity: warn
        query: |
          SELECT game_date AS date, COUNT(*) AS rows FROM raw.box
          WHERE game_date BETWEEN @start AND @end GROUP BY 1
        expect: ["rows >= quantile(rows, 0.25, 7) - 1", "rows >= 0.5 * last_week(rows)"]
"""


def test_baselines_come_from_the_query_rows_and_before_the_range_from_stored_results(
    make_workspace: Any,
) -> None:
    ws = make_workspace(BASELINES)
    days = [START + dt.timedelta(days=n) for n in range(28)]
    # 10 rows per date, but 2024-11-20 has 2: half the median is 5, a week before had 10.
    rows = [
        r
        for r in box(days, players=10, bad=None)
        if r["game_date"] != dt.date(2024, 11, 20) or r["player"] < "p2"
    ]
    seed(ws, rows=rows)

    first = ws.cli("validate", "--start", "2024-11-01", "--end", "2024-11-14", "--json").json()
    assert first["passed"] is True  # the first dates have no history yet: not judged, not failed
    # The first date's baseline conditions say so.
    day_one = next(r for r in dated(ws) if r["date"] == "2024-11-01" and r["check_name"] == "volume")
    conditions = json.loads(
        query(ws.db, f"SELECT conditions FROM check_date WHERE id = {day_one['id']}")[0]["conditions"]
    )
    assert conditions[0]["no_history"] is True

    # A later range on its own: the baselines of its first dates come from the stored results.
    later = ws.cli("validate", "--start", "2024-11-20", "--end", "2024-11-28", "--json").json()
    by_check = {r["check"]: r for r in later["results"]}
    volume = by_check["volume"]
    assert volume["passed"] is False and volume["severity"] == "warn"
    (failed,) = volume["failed_dates"]
    assert failed["text"] == "2024-11-20: rows >= 0.5 * median(rows, 14) (2 >= 5)"
    assert "WHERE `game_date` BETWEEN @start AND @end" in volume["query"]
    history = by_check["usage_vs_history"]
    (failed,) = history["failed_dates"]
    assert failed["start"] == "2024-11-20"
    assert "rows >= 0.5 * last_week(rows) (2 >= 5)" in failed["text"]
    assert later["blocking_failures"] == []


STABLE = """
calendar:
  start: 2024-11-01
  end: 2024-11-10
processors:
  player_game_summary:
    check_batch_days: 10
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.pgs (game_date DATE, player STRING, usage_rate FLOAT64, note STRING);
      DELETE FROM analytics.pgs WHERE game_date = @date;
      INSERT INTO analytics.pgs SELECT game_date, player, usage_rate, note FROM raw.box WHERE game_date = @date
    checks:
      - name: totals_stable
        per_date: true
        query: |
          SELECT game_date AS date, COUNT(*) AS players, SUM(usage_rate) AS usage_total FROM analytics.pgs
          WHERE game_date BETWEEN @start AND @end GROUP BY 1
        stable: [players, usage_total]
        tolerance: 0.1
"""


def test_a_rebuild_that_changes_stable_metrics_is_reported_with_both_values(make_workspace: Any) -> None:
    ws = make_workspace(STABLE)
    seed(ws, rows=box(DATES, bad=None))
    first = ws.runbook("run")
    assert first.code == 0, first.stdout + first.stderr  # nothing stored before: nothing to compare
    # The source changes 2024-11-02 by 5 % (within tolerance) and 2024-11-06 by 50 %; rebuild.
    seed(
        ws,
        "UPDATE raw.box SET usage_rate = 21 WHERE game_date = DATE '2024-11-02'",
        "UPDATE raw.box SET usage_rate = 30 WHERE game_date = DATE '2024-11-06'",
    )
    rebuild = ws.runbook("run", "--no-resume")
    assert rebuild.code == 3, rebuild.stdout + rebuild.stderr
    (result,) = ws.cli("show", "2", "--json").json()["checks"]
    assert result["changed_dates"] == [
        {"date": "2024-11-06", "metric": "usage_total", "before": 80.0, "after": 120.0, "change": 0.5}
    ]
    (failed,) = result["failed_dates"]
    assert failed["text"] == "2024-11-06: usage_total changed by the rebuild (80 -> 120, +50.0%)"
    # Validating again still compares with the values stored before the rebuild, not with its own.
    again = ws.cli("validate")
    assert again.code == 3
    assert "2024-11-06: usage_total changed by the rebuild (80 -> 120, +50.0%)" in again.stdout
    handoff = ws.cli("handoff", "--out", "-").stdout
    assert "- 2024-11-06: usage_total 80 -> 120" in handoff


FRESHNESS = """
calendar:
  start: 2024-11-01
  end: 2024-11-10
  off_days: [2024-11-10]
processors:
  player_game_summary:
    sql: SELECT 1
    checks:
      - name: fresh
        kind: freshness
        table: raw.box
"""


def test_freshness_compares_the_newest_date_with_the_calendar(make_workspace: Any) -> None:
    ws = make_workspace(FRESHNESS)
    seed(ws, rows=box(DATES[:7], bad=None))  # through 2024-11-07
    found = ws.cli("validate", "--json")
    assert found.code == 3
    (result,) = found.json()["results"]
    assert result["metrics"]["newest_date"] == "2024-11-07"
    assert result["metrics"]["expected_newest"] == "2024-11-09"  # 2024-11-10 is an off-day
    assert result["conditions"][0]["expr"] == "days_behind <= 0"
    assert result["conditions"][0]["value"] == 2
    seed(ws, rows=box(DATES[7:9], bad=None))
    assert ws.cli("validate").code == 0


def test_bad_check_config_is_one_line_at_load_time(make_workspace: Any) -> None:
    cases = [
        ('expect: ["rows >= mean(rows, 3)"]', "unknown function 'mean'"),
        ('expect: ["rows >= median(rows)"]', "median takes 2 argument(s): median(metric, N)"),
        ('expect: ["rows >= median(rows, 0)"]', "N in median(metric, N) must be a whole number"),
        (
            'expect: ["rows >= quantile(rows, 1.5, 7)"]',
            "q in quantile(metric, q, N) must be a number from 0 to 1",
        ),
    ]
    for expect, message in cases:
        ws = make_workspace(
            BASELINES.replace(
                'expect: ["rows >= quantile(rows, 0.25, 7) - 1", "rows >= 0.5 * last_week(rows)"]', expect
            ),
            name=f"ws{len(message)}",
        )
        result = ws.cli("validate")
        assert result.code == 2, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert "processors.player_game_summary.checks.1.expect.0" in lines[0]
    ws = make_workspace(STABLE.replace("per_date: true", "per_date: false"), name="range")
    result = ws.cli("validate")
    assert result.code == 2 and "stable: compares each date before and after a rebuild" in result.stderr
    ws = make_workspace(FRESHNESS.replace("table: raw.box", "table: 'raw.box; DROP TABLE x'"), name="table")
    result = ws.cli("validate")
    assert result.code == 2 and "not a table name" in result.stderr


def test_per_date_gates_and_rebuild_changes_on_postgres(make_workspace: Any, pg_url: str) -> None:
    ws = make_workspace(STABLE + ROLLUP, extra_env={"RUNBOOK_DATABASE_URL": pg_url})
    seed(ws, rows=box(DATES, bad=None))
    first = ws.runbook("run")
    assert first.code == 0, first.stdout + first.stderr
    seed(ws, "UPDATE raw.box SET usage_rate = 30 WHERE game_date = DATE '2024-11-06'")
    rebuild = ws.runbook("run", "--no-resume")
    assert rebuild.code == 3, rebuild.stdout + rebuild.stderr
    shown = ws.runbook("show", "2", "--json").json()
    (check,) = shown["checks"]
    assert [c["date"] for c in check["changed_dates"]] == ["2024-11-06"]
    blocked = [
        t for t in ws.runbook("show", "2", "--tasks", "--json").json()["tasks"] if t["status"] == "blocked"
    ]
    assert [(t["processor"], t["date"]) for t in blocked] == [("rollup", "2024-11-06")]


ROLLUP = """  rollup:
    needs: [player_game_summary]
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.rollup (game_date DATE, players INT64);
      DELETE FROM analytics.rollup WHERE game_date = @date;
      INSERT INTO analytics.rollup SELECT game_date, COUNT(*) FROM analytics.pgs WHERE game_date = @date GROUP BY 1
"""


RANGE_SAMPLE = """
calendar:
  start: 2024-11-01
  end: 2024-11-10
processors:
  player_game_summary:
    sql: SELECT 1
    checks:
      - name: usage_rate_coverage
        query: |
          SELECT ROUND(100 * SAFE_DIVIDE(COUNTIF(usage_rate IS NOT NULL), COUNT(*)), 1) AS pct_populated
          FROM raw.box WHERE game_date BETWEEN @start AND @end
        expect: ["pct_populated >= 95"]
        sample: |
          SELECT game_date, player, note FROM raw.box
          WHERE game_date BETWEEN @start AND @end AND usage_rate IS NULL ORDER BY player
"""


def test_a_range_wide_check_keeps_sample_rows_of_its_failure(make_workspace: Any) -> None:
    ws = make_workspace(RANGE_SAMPLE)
    seed(ws, rows=box(DATES))  # 2024-11-04 has no usage_rate: 90 % over the range
    found = ws.cli("validate", "--json")
    assert found.code == 3
    (result,) = found.json()["results"]
    assert (result["per_date"], result["failed_dates"], result["conditions"][0]["value"]) == (False, [], 90.0)
    (sample,) = result["samples"]
    assert (sample["date"], sample["more"], sample["error"]) == (None, False, None)
    assert [row["player"] for row in sample["rows"]] == ["p0", "p1", "p2", "p3"]
    assert sample["rows"][0]["game_date"] == "2024-11-04"
    assert sample["rows"][0]["note"].startswith("api_key=***")
    text = ws.cli("validate").stdout
    assert "sample rows:" in text and "player=p1" in text
    # A passing check takes no sample.
    seed(ws, "UPDATE raw.box SET usage_rate = 1")
    assert ws.cli("validate", "--json").json()["results"][0]["samples"] == []
