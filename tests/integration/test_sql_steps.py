"""SQL steps on a real DuckDB warehouse through the real CLI: rows affected on each task, a calendar
taken from a warehouse query, per-date readiness of upstream tables, and extent warnings.

The warehouse is seeded with the DuckDB adapter and closed before the CLI runs (DuckDB allows one
writing process per file); expectations are counted here from the seeded dates.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from core_helpers import query, tasks, wait_for

from runbook.errors import WarehouseError
from runbook.warehouse.duckdb import DuckDBWarehouse

WAREHOUSE = "state/warehouse.duckdb"
START, END = dt.date(2024, 11, 1), dt.date(2024, 11, 10)
# Games on these dates only (no games on Nov 3, 6, 7 and 9).
GAME_DAYS = [dt.date(2024, 11, d) for d in (1, 2, 4, 5, 8, 10)]
GAMES_PER_DAY = {day: 2 + i % 3 for i, day in enumerate(GAME_DAYS)}


def seed(ws: Any, sql: str, params: dict[str, Any] | None = None) -> None:
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        warehouse.execute(sql, params or {})
    finally:
        warehouse.close()


def read(ws: Any, sql: str) -> list[dict[str, Any]]:
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        return warehouse.query(sql)
    finally:
        warehouse.close()


def seed_games(ws: Any, days: list[dt.date] | None = None) -> None:
    days = GAME_DAYS if days is None else days
    seed(ws, "CREATE TABLE raw.games (game_date DATE, game_id STRING, points INT64)")
    rows = [
        {"game_date": day, "game_id": f"{day:%Y%m%d}_{n}", "points": 100 + n}
        for day in days
        for n in range(GAMES_PER_DAY.get(day, 2))
    ]
    warehouse = DuckDBWarehouse(ws.root / WAREHOUSE)
    try:
        warehouse.load_rows("raw.games", rows)
    finally:
        warehouse.close()


SQL_STEPS = """
calendar:
  start: 2024-11-01
  end: 2024-11-10
processors:
  game_summary:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.game_summary (game_date DATE, game_id STRING, points INT64);
      MERGE analytics.game_summary t
      USING (SELECT game_date, game_id, points FROM raw.games WHERE game_date = @date) s
      ON t.game_id = s.game_id
      WHEN MATCHED THEN UPDATE SET points = s.points
      WHEN NOT MATCHED THEN INSERT (game_date, game_id, points) VALUES (s.game_date, s.game_id, s.points)
  weekly_points:
    needs: [game_summary]
    batch_days: 5
    sql_file: sql/weekly_points.sql
"""

WEEKLY_SQL = """
CREATE TABLE IF NOT EXISTS analytics.daily_points (game_date DATE, points INT64);
DELETE FROM analytics.daily_points WHERE game_date BETWEEN @start AND @end;
INSERT INTO analytics.daily_points
SELECT game_date, SUM(points) FROM analytics.game_summary
WHERE game_date BETWEEN @start AND @end
GROUP BY game_date
"""


def test_sql_steps_inline_and_from_file_record_rows_affected(make_workspace: Any) -> None:
    ws = make_workspace(SQL_STEPS)
    (ws.root / "sql").mkdir()
    (ws.root / "sql" / "weekly_points.sql").write_text(WEEKLY_SQL)
    seed_games(ws)

    result = ws.runbook("run", "--json")
    assert result.code == 0, result.stderr

    rows = {(t["processor"], t["date"]): t for t in tasks(ws.db)}
    for n in range(10):
        day = START + dt.timedelta(days=n)
        summary = rows[("game_summary", day.isoformat())]
        assert summary["status"] == "succeeded"
        assert summary["rows_affected"] == GAMES_PER_DAY.get(day, 0)
    chunks = sorted(
        (t["date"], t["end_date"], t["rows_affected"])
        for t in tasks(ws.db)
        if t["processor"] == "weekly_points"
    )
    game_days = {day.isoformat() for day in GAME_DAYS}
    assert chunks == [
        ("2024-11-01", "2024-11-05", sum(1 for d in game_days if d <= "2024-11-05")),
        ("2024-11-06", "2024-11-10", sum(1 for d in game_days if d >= "2024-11-06")),
    ]
    built = read(ws, "SELECT COUNT(*) AS games, SUM(points) AS points FROM analytics.game_summary")
    expected_points = sum(100 + n for day in GAME_DAYS for n in range(GAMES_PER_DAY[day]))
    assert built == [{"games": sum(GAMES_PER_DAY.values()), "points": expected_points}]

    # The MERGE is idempotent: running the dates again matches every game and inserts nothing new.
    again = ws.runbook("run", "game_summary", "--no-resume", "--start", "2024-11-01", "--end", "2024-11-02")
    assert again.code == 0, again.stderr
    rerun = [t for t in tasks(ws.db) if t["run_id"] == 2]
    assert [t["rows_affected"] for t in rerun] == [
        GAMES_PER_DAY[START],
        GAMES_PER_DAY[START + dt.timedelta(days=1)],
    ]
    assert read(ws, "SELECT COUNT(*) AS games FROM analytics.game_summary") == [
        {"games": sum(GAMES_PER_DAY.values())}
    ]


def test_a_failing_sql_step_fails_its_task_with_the_warehouse_error(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        processors:
          broken:
            sql: SELECT * FROM raw.no_such_table WHERE game_date = @date
        """
    )
    seed_games(ws)
    result = ws.runbook("run", "--start", "2024-11-01", "--end", "2024-11-01")
    assert result.code == 1
    (task,) = tasks(ws.db)
    assert task["status"] == "failed"
    assert "no_such_table" in task["error_tail"]


# A statement that takes hours on DuckDB: only an interrupt ends it in time.
ENDLESS = (
    "SELECT COUNT(*) AS n FROM UNNEST(GENERATE_ARRAY(1, 100000)) AS a CROSS JOIN UNNEST(GENERATE_ARRAY(1, 100000)) "
    "AS b CROSS JOIN UNNEST(GENERATE_ARRAY(1, 1000)) AS c WHERE a + b + c < 0"
)


def test_a_sql_step_past_its_timeout_is_interrupted_and_retried(make_workspace: Any) -> None:
    ws = make_workspace(
        f"""
        processors:
          slow:
            sql: |
              CREATE TABLE IF NOT EXISTS analytics.before_slow (d DATE);
              INSERT INTO analytics.before_slow VALUES (@date);
              {ENDLESS};
              CREATE TABLE analytics.after_slow (d DATE)
            timeout: 1s
            retries: 1
        """
    )
    seed_games(ws)
    result = ws.runbook("run", "--start", "2024-11-01", "--end", "2024-11-01")
    assert result.code == 1, result.stdout + result.stderr
    (task,) = tasks(ws.db)
    assert task["status"] == "failed" and task["attempt"] == 2
    assert task["error_tail"] == "step timed out after 1s: its statement was interrupted"
    # What ran before the interrupted statement stays; nothing after it ran.
    assert [row["d"] for row in read(ws, "SELECT d FROM analytics.before_slow")] == [dt.date(2024, 11, 1)] * 2
    with pytest.raises(WarehouseError, match="after_slow"):
        read(ws, "SELECT * FROM analytics.after_slow")


def test_stop_interrupts_a_running_sql_step(make_workspace: Any) -> None:
    ws = make_workspace(
        f"""
        processors:
          slow:
            sql: {ENDLESS}
        """
    )
    seed_games(ws)
    started = ws.runbook(
        "run", "--start", "2024-11-01", "--end", "2024-11-01", "--detach", "--json", check=True
    )
    run_id = started.json()["run_id"]
    wait_for(lambda: [t["status"] for t in tasks(ws.db)] == ["running"], what="the SQL step running")
    assert ws.runbook("stop", str(run_id)).code == 0
    wait_for(
        lambda: query(ws.db, "SELECT status FROM run WHERE id = ?", (run_id,))[0]["status"] == "interrupted",
        timeout=30,
        what="the run stopped",
    )
    (task,) = tasks(ws.db)
    assert task["status"] == "pending"  # handed back: resume runs it again
    log = (ws.root / "state" / "logs" / f"run-{run_id}.log").read_text(encoding="utf-8")
    assert "statement interrupted (stop)" in log


CALENDAR_QUERY = """
calendar:
  query: |
    SELECT DISTINCT game_date FROM `demo-project.raw.games`
    WHERE game_date BETWEEN @start AND @end
processors:
  game_summary:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.counts (game_date DATE, games INT64);
      INSERT INTO analytics.counts SELECT @date, COUNT(*) FROM raw.games WHERE game_date = @date
"""


def test_calendar_query_makes_the_other_dates_off_days(make_workspace: Any) -> None:
    ws = make_workspace(CALENDAR_QUERY)
    seed_games(ws)

    plan = ws.cli("plan", "--start", "2024-11-01", "--end", "2024-11-10", "--json")
    assert plan.code == 0, plan.stderr
    dates = {row["date"]: row for row in plan.json()["dates"]}
    for n in range(10):
        day = START + dt.timedelta(days=n)
        row = dates[day.isoformat()]
        if day in GAME_DAYS:
            assert (row["action"], row["reason"]) == ("run", None)
        else:
            assert (row["action"], row["reason"]) == ("skip", "off_day")

    result = ws.runbook("run", "--start", "2024-11-01", "--end", "2024-11-10")
    assert result.code == 0, result.stderr
    statuses = Counter((t["status"], t["skip_reason"]) for t in tasks(ws.db))
    assert statuses == {("succeeded", None): len(GAME_DAYS), ("skipped", "off_day"): 10 - len(GAME_DAYS)}
    counts = read(ws, "SELECT game_date, games FROM analytics.counts ORDER BY game_date")
    assert [(row["game_date"], row["games"]) for row in counts] == [(d, GAMES_PER_DAY[d]) for d in GAME_DAYS]


READY = """
calendar:
  start: 2024-11-01
  end: 2024-11-05
processors:
  factors:
    sql: |
      CREATE TABLE IF NOT EXISTS analytics.factors (game_date DATE, games INT64);
      INSERT INTO analytics.factors SELECT @date, COUNT(*) FROM raw.games WHERE game_date = @date
    ready:
      - {table: "demo-project.raw.games", date_column: game_date}
      - {table: raw.box_scores, date_column: played_on}
"""


def test_dates_whose_ready_tables_are_empty_are_skipped_as_upstream_missing(make_workspace: Any) -> None:
    ws = make_workspace(READY)
    seed_games(ws)  # games on Nov 1, 2, 4, 5
    seed(ws, "CREATE TABLE raw.box_scores (played_on DATE)")
    seed(
        ws, "INSERT INTO raw.box_scores VALUES (DATE '2024-11-01'), (DATE '2024-11-02'), (DATE '2024-11-05')"
    )

    result = ws.runbook("run")
    assert result.code == 0, result.stderr  # not ready is not a failure

    by_date = {t["date"]: t for t in tasks(ws.db)}
    assert {d: (t["status"], t["skip_reason"]) for d, t in by_date.items()} == {
        "2024-11-01": ("succeeded", None),
        "2024-11-02": ("succeeded", None),
        "2024-11-03": ("skipped", "upstream_missing"),
        "2024-11-04": ("skipped", "upstream_missing"),
        "2024-11-05": ("succeeded", None),
    }
    assert by_date["2024-11-03"]["error_tail"] == "demo-project.raw.games has no rows for 2024-11-03"
    assert by_date["2024-11-04"]["error_tail"] == "raw.box_scores has no rows for 2024-11-04"
    assert read(ws, "SELECT COUNT(*) AS n FROM analytics.factors") == [{"n": 3}]

    shown = ws.cli("show", "1", "--json").json()
    assert shown["run"]["status"] == "succeeded"
    factors = next(p for p in shown["run"]["per_processor"] if p["name"] == "factors")
    assert factors["skipped"]["upstream_missing"] == 2
    assert shown["failures"] == []
    skipped = [e["message"] for e in shown["events"] if e["kind"] == "task_skipped"]
    assert "factors 2024-11-04: raw.box_scores has no rows for 2024-11-04" in skipped

    # Once the upstream rows arrive, the same dates run.
    seed(ws, "INSERT INTO raw.box_scores VALUES (DATE '2024-11-04')")
    again = ws.runbook("run")
    assert again.code == 0, again.stderr
    second = Counter((t["status"], t["skip_reason"]) for t in tasks(ws.db, 2))
    assert second == {
        ("skipped", "already_done"): 3,
        ("succeeded", None): 1,
        ("skipped", "upstream_missing"): 1,
    }


def test_a_bad_ready_table_name_is_a_config_error(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        processors:
          factors:
            sql: SELECT 1
            ready:
              - {table: "raw.games; DROP TABLE raw.games", date_column: game_date}
        """
    )
    result = ws.runbook("run", "--start", "2024-11-01", "--end", "2024-11-01")
    assert result.code == 2
    assert "processors.factors.ready.0.table: not a table name" in result.stderr
    assert "Traceback" not in result.stderr


EXTENT = """
calendar:
  off_weekdays: [sun]
processors:
  player_game_summary:
    sql: SELECT 1
    extent: |
      SELECT MIN(game_date) AS first_date, MAX(game_date) AS last_date FROM `demo-project.raw.games`
  by_position:
    sql: SELECT 1
    extent: SELECT MIN(game_date), MAX(game_date) FROM raw.games WHERE game_date <= DATE_ADD(@end, INTERVAL 2 DAY)
  inside:
    sql: SELECT 1
    extent: SELECT DATE '2024-11-02' AS first_date, DATE '2024-11-03' AS last_date
"""


def calendar_dates(first: dt.date, last: dt.date, active: set[dt.date] | None = None) -> int:
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    return sum(1 for d in days if d.weekday() != 6 and (active is None or d in active))


def test_extent_warns_about_source_dates_outside_the_range(make_workspace: Any) -> None:
    ws = make_workspace(EXTENT)
    first, last = dt.date(2024, 10, 1), dt.date(2025, 2, 14)
    seed_games(ws, [first, dt.date(2024, 11, 5), last])
    start, end = dt.date(2024, 11, 1), dt.date(2024, 11, 30)

    plan = ws.cli("plan", "--start", str(start), "--end", str(end), "--json")
    assert plan.code == 0, plan.stderr
    after = calendar_dates(end + dt.timedelta(days=1), last)
    before = calendar_dates(first, start - dt.timedelta(days=1))
    expected = [
        f"player_game_summary: source has data through {last}: {after} dates after your end date {end} are not covered",
        f"player_game_summary: source has data from {first}: {before} dates before your start date {start} are not covered",
        f"by_position: source has data from {first}: {before} dates before your start date {start} are not covered",
    ]
    assert plan.json()["warnings"] == expected

    human = ws.cli("plan", "--start", str(start), "--end", str(end))
    assert f"warning: {expected[0]}" in human.stdout

    run = ws.runbook("run", "--start", str(start), "--end", str(end))
    assert run.code == 0, run.stderr
    for message in expected:
        assert f"warning: {message}" in run.stderr
    events = query(ws.db, "SELECT processor, message FROM event WHERE kind = 'extent_warning' ORDER BY id")
    assert [(e["processor"], e["message"]) for e in events] == [
        ("player_game_summary", expected[0]),
        ("player_game_summary", expected[1]),
        ("by_position", expected[2]),
    ]
    assert {e["run_id"] for e in query(ws.db, "SELECT run_id FROM event WHERE kind = 'extent_warning'")} == {
        1
    }

    covered = ws.cli("plan", "--start", str(first), "--end", str(last), "--json")
    assert covered.json()["warnings"] == []


def test_extent_counts_only_the_dates_of_a_calendar_query(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        calendar:
          query: SELECT DISTINCT game_date FROM raw.games WHERE game_date BETWEEN @start AND @end
        processors:
          player_game_summary:
            sql: SELECT 1
            extent: SELECT MIN(game_date) AS first_date, MAX(game_date) AS last_date FROM raw.games
        """
    )
    seed_games(ws)
    plan = ws.cli("plan", "--start", "2024-11-01", "--end", "2024-11-03", "--json")
    assert plan.code == 0, plan.stderr
    later = [d for d in GAME_DAYS if d > dt.date(2024, 11, 3)]
    assert plan.json()["warnings"] == [
        f"player_game_summary: source has data through 2024-11-10: {len(later)} dates after your end date "
        "2024-11-03 are not covered"
    ]


def test_a_failing_extent_query_is_a_warning_not_an_error(make_workspace: Any) -> None:
    ws = make_workspace(
        """
        processors:
          p:
            sql: SELECT 1
            extent: SELECT MIN(d), MAX(d) FROM raw.missing_table
        """
    )
    seed_games(ws)
    result = ws.runbook("run", "--start", "2024-11-01", "--end", "2024-11-01")
    assert result.code == 0, result.stderr
    assert "warning: p: the extent query failed:" in result.stderr
    assert "missing_table" in result.stderr
