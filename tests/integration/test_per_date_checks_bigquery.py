"""Per-date checks on the BigQuery emulator through the real CLI and the real BigQuery client:
one row per date, failing dates as ranges, a volume baseline, freshness and sample rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bqemu import Emulator, emulator_fixture

from runbook.config import WarehouseConfig
from runbook.warehouse.bigquery import BigQueryWarehouse

pytestmark = pytest.mark.bigquery

bqemu = emulator_fixture(project="proj")

TABLE = "proj.nba_analytics.pgs_per_date"
DAYS = [dt.date(2024, 11, 1) + dt.timedelta(days=n) for n in range(21)]

CONFIG = """
warehouse:
  kind: bigquery
  project: proj
  api_endpoint: {endpoint}
calendar:
  start: 2024-11-01
  end: 2024-11-21
processors:
  player_game_summary:
    sql: SELECT 1
    checks:
      - name: usage_rate_coverage
        per_date: true
        query: |
          SELECT game_date AS date, COUNT(*) AS total_records,
                 ROUND(100 * SAFE_DIVIDE(COUNTIF(usage_rate IS NOT NULL), COUNT(*)), 1) AS pct_populated
          FROM `{table}` WHERE game_date BETWEEN @start AND @end GROUP BY game_date
        expect: ["pct_populated >= 40"]
        sample: |
          SELECT player_lookup FROM `{table}` WHERE game_date = @date AND usage_rate IS NULL
          ORDER BY player_lookup
      - name: volume
        kind: volume
        table: {table}
      - name: fresh
        kind: freshness
        table: {table}
"""


@pytest.fixture(scope="module")
def loaded(bqemu: Emulator) -> Emulator:
    config = WarehouseConfig(kind="bigquery", project="proj", api_endpoint=bqemu.endpoint)
    warehouse = BigQueryWarehouse.from_config(config, {})
    try:
        warehouse.execute(
            "CREATE SCHEMA IF NOT EXISTS `proj.nba_analytics`;"
            f"CREATE TABLE `{TABLE}` (game_date DATE, player_lookup STRING, usage_rate FLOAT64)"
        )
        rows = []
        for day in DAYS[:-1]:  # nothing on the last date: freshness is 1 date behind
            players = 2 if day == dt.date(2024, 11, 16) else 10  # a volume drop
            for i in range(players):
                bad = dt.date(2024, 11, 8) <= day <= dt.date(2024, 11, 9)
                rows.append({"game_date": day, "player_lookup": f"p{i}", "usage_rate": None if bad else 20.0})
        warehouse.load_rows(TABLE, rows)
    finally:
        warehouse.close()
    return bqemu


def test_per_date_checks_on_the_bigquery_emulator(loaded: Emulator, make_workspace: Any) -> None:
    ws = make_workspace(CONFIG.format(endpoint=loaded.endpoint, table=TABLE))
    found = ws.cli("validate", "--json")
    assert found.code == 3, found.stdout + found.stderr
    results = {r["check"]: r for r in found.json()["results"]}

    usage = results["usage_rate_coverage"]
    assert usage["per_date"] is True
    # 2024-11-21 has no row: its data is missing, so it fails too.
    assert [(r["start"], r["end"], r["dates"]) for r in usage["failed_dates"]] == [
        ("2024-11-08", "2024-11-09", 2),
        ("2024-11-21", "2024-11-21", 1),
    ]
    assert usage["failed_dates"][0]["values"] == {"pct_populated": {"min": 0.0, "max": 0.0}}
    assert "no row for 2024-11-21" in usage["failed_dates"][1]["text"]
    assert [s["date"] for s in usage["samples"]] == ["2024-11-08", "2024-11-09"]
    assert [row["player_lookup"] for row in usage["samples"][0]["rows"]] == ["p0", "p1", "p2", "p3", "p4"]
    assert usage["samples"][0]["more"] is True

    volume = results["volume"]
    assert [r["start"] for r in volume["failed_dates"]] == ["2024-11-16", "2024-11-21"]
    assert volume["failed_dates"][0]["text"] == "2024-11-16: rows >= 0.5 * median(rows, 14) (2 >= 5)"

    fresh = results["fresh"]
    assert (fresh["metrics"]["newest_date"], fresh["metrics"]["days_behind"]) == ("2024-11-20", 1)
    assert fresh["passed"] is False

    text = ws.cli("validate", "player_game_summary")
    assert "2024-11-08..2024-11-09 (2 dates): pct_populated >= 40; pct_populated 0" in text.stdout
