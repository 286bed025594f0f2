"""Synthetic NBA rows, the DDL for them, the seeds' verification queries, and their answers.

The same BigQuery-dialect DDL and rows are loaded into every warehouse under test; the expected
answers are computed here in plain Python, so a wrong translation cannot agree with itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

PGS = "proj.nba_analytics.player_game_summary"
FEATURES = "proj.nba_predictions.ml_feature_store_v2"
TOTALS = "proj.nba_analytics.player_totals"
START = dt.date(2024, 1, 2)
END = dt.date(2024, 1, 4)

SCHEMA_SQL = f"""
CREATE SCHEMA IF NOT EXISTS `proj.nba_analytics`;
CREATE SCHEMA IF NOT EXISTS `proj.nba_predictions`;
CREATE TABLE `{PGS}` (game_id STRING, player_lookup STRING, game_date DATE, minutes_played FLOAT64,
  usage_rate FLOAT64, points INT64);
CREATE TABLE `{FEATURES}` (game_date DATE, player_lookup STRING, features ARRAY<FLOAT64>);
CREATE TABLE `{TOTALS}` (player_lookup STRING, points INT64, games INT64);
"""

COVERAGE_SQL = f"""SELECT COUNT(*) as total_records, COUNTIF(usage_rate IS NOT NULL) as with_usage_rate,
  ROUND(100.0 * COUNTIF(usage_rate IS NOT NULL) / COUNT(*), 1) as pct_populated
FROM `{PGS}` WHERE game_date >= @start AND minutes_played > 0"""

DUPLICATES_SQL = f"""SELECT COUNT(*) as duplicates FROM (SELECT game_id, player_lookup, COUNT(*) as cnt
  FROM `{PGS}` WHERE game_date >= @start
  GROUP BY game_id, player_lookup HAVING COUNT(*) > 1)"""

FEATURES_SQL = f"""SELECT game_date, COUNT(*) as players, COUNTIF(features[OFFSET(8)] != 0) as non_zero
FROM `{FEATURES}` WHERE game_date BETWEEN @start AND @end GROUP BY 1 ORDER BY 1"""

# The same question as FEATURES_SQL without COUNTIF around an array subscript (see the emulator test).
FEATURES_SUM_IF_SQL = f"""SELECT game_date, COUNT(*) as players, SUM(IF(features[OFFSET(8)] != 0, 1, 0)) as non_zero
FROM `{FEATURES}` WHERE game_date BETWEEN @start AND @end GROUP BY 1 ORDER BY 1"""

MERGE_SQL = f"""MERGE `{TOTALS}` T
USING (SELECT player_lookup, SUM(points) AS points, COUNT(*) AS games FROM `{PGS}`
       WHERE game_date = @day GROUP BY player_lookup) S
ON T.player_lookup = S.player_lookup
WHEN MATCHED THEN UPDATE SET points = T.points + S.points, games = T.games + S.games
WHEN NOT MATCHED THEN INSERT (player_lookup, points, games) VALUES (S.player_lookup, S.points, S.games)"""

PLAYERS = ["lebronjames", "stephcurry", "kevindurant", "jokic", "giannis"]
DATES = [dt.date(2024, 1, 1) + dt.timedelta(days=offset) for offset in range(5)]


def player_game_rows() -> list[dict[str, Any]]:
    """One row per player and date, with gaps in usage_rate, DNPs and two duplicated rows."""
    rows = []
    for day_index, day in enumerate(DATES):
        for player_index, player in enumerate(PLAYERS):
            minutes = 0.0 if (day_index + player_index) % 6 == 0 else 12.5 + player_index * 4
            usage = None if (day_index * 2 + player_index) % 3 == 0 else round(0.1 + player_index / 50, 3)
            rows.append(
                {
                    "game_id": f"g{day:%m%d}",
                    "player_lookup": player,
                    "game_date": day,
                    "minutes_played": minutes,
                    "usage_rate": usage,
                    "points": 10 + day_index + player_index,
                }
            )
    rows.append(dict(rows[7]))
    rows.append(dict(rows[16]))
    return rows


def feature_rows() -> list[dict[str, Any]]:
    """Ten features per player and date; feature 8 is zero for some of them."""
    rows = []
    for day_index, day in enumerate(DATES):
        for player_index, player in enumerate(PLAYERS):
            features = [float(day_index + player_index + n) for n in range(10)]
            features[8] = 0.0 if (day_index + player_index) % 3 == 0 else 1.5 + player_index
            rows.append({"game_date": day, "player_lookup": player, "features": features})
    return rows


def expected_coverage(start: dt.date = START) -> list[dict[str, Any]]:
    played = [r for r in player_game_rows() if r["game_date"] >= start and r["minutes_played"] > 0]
    with_usage = sum(1 for r in played if r["usage_rate"] is not None)
    pct = round(100.0 * with_usage / len(played), 1)
    return [{"total_records": len(played), "with_usage_rate": with_usage, "pct_populated": pct}]


def expected_duplicates(start: dt.date = START) -> list[dict[str, Any]]:
    keys = [(r["game_id"], r["player_lookup"]) for r in player_game_rows() if r["game_date"] >= start]
    return [{"duplicates": len({key for key in keys if keys.count(key) > 1})}]


def expected_features(start: dt.date = START, end: dt.date = END) -> list[dict[str, Any]]:
    result = []
    for day in sorted({r["game_date"] for r in feature_rows() if start <= r["game_date"] <= end}):
        rows = [r for r in feature_rows() if r["game_date"] == day]
        non_zero = sum(1 for r in rows if r["features"][8] != 0)
        result.append({"game_date": day, "players": len(rows), "non_zero": non_zero})
    return result


def load(warehouse: Any) -> None:
    """Create the tables and load the synthetic rows into ``warehouse``."""
    warehouse.execute(SCHEMA_SQL)
    warehouse.load_rows(PGS, player_game_rows())
    warehouse.load_rows(FEATURES, feature_rows())
    warehouse.load_rows(TOTALS, [{"player_lookup": "lebronjames", "points": 100, "games": 4}])
