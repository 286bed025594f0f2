"""BigQuery -> DuckDB translation: the seeds' SQL shapes, name mapping, parameters, splitting."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from runbook.errors import WarehouseError
from runbook.warehouse.dialect import (
    describe_query,
    duckdb_table_name,
    failure,
    parameter_names,
    split_statements,
    translate,
)

COVERAGE_SQL = """SELECT COUNT(*) as total_records, COUNTIF(usage_rate IS NOT NULL) as with_usage_rate,
  ROUND(100.0 * COUNTIF(usage_rate IS NOT NULL) / COUNT(*), 1) as pct_populated
FROM `proj.nba_analytics.player_game_summary` WHERE game_date >= @start AND minutes_played > 0"""

FEATURES_SQL = """SELECT game_date, COUNT(*) as players, COUNTIF(features[OFFSET(8)] != 0) as non_zero
FROM `proj.nba_predictions.ml_feature_store_v2` WHERE game_date BETWEEN @start AND @end GROUP BY 1 ORDER BY 1"""

MERGE_SQL = """MERGE `proj.nba_analytics.totals` T
USING (SELECT player_lookup, SUM(points) AS points FROM `proj.nba_analytics.games` WHERE game_date = @day
       GROUP BY player_lookup) S
ON T.player_lookup = S.player_lookup
WHEN MATCHED THEN UPDATE SET points = T.points + S.points
WHEN NOT MATCHED THEN INSERT (player_lookup, points) VALUES (S.player_lookup, S.points)"""


def only(sql: str) -> str:
    (statement,) = translate(sql)
    return statement.duckdb_sql


@pytest.fixture
def duck() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA nba_analytics; CREATE SCHEMA nba_predictions")
    conn.execute(
        "CREATE TABLE nba_analytics.player_game_summary (game_id VARCHAR, player_lookup VARCHAR,"
        " game_date DATE, minutes_played DOUBLE, usage_rate DOUBLE)"
    )
    conn.execute("CREATE TABLE nba_predictions.ml_feature_store_v2 (game_date DATE, features DOUBLE[])")
    return conn


def test_seed_coverage_query_translates_and_runs(duck: duckdb.DuckDBPyConnection) -> None:
    sql = only(COVERAGE_SQL)
    assert "COUNT_IF" in sql and "$start" in sql and '"nba_analytics"."player_game_summary"' in sql
    assert '"proj"' not in sql
    duck.execute(
        "INSERT INTO nba_analytics.player_game_summary VALUES ('g1', 'a', '2024-01-02', 30, 0.2),"
        " ('g1', 'b', '2024-01-02', 12, NULL), ('g1', 'c', '2024-01-02', 0, 0.1), ('g0', 'a', '2023-12-30', 9, 0.3)"
    )
    row = duck.execute(sql, {"start": dt.date(2024, 1, 1)}).fetchone()
    assert row == (2, 1, 50.0)


def test_offset_is_zero_based_like_bigquery(duck: duckdb.DuckDBPyConnection) -> None:
    sql = only(FEATURES_SQL)
    assert "features[9]" in sql
    duck.execute(
        "INSERT INTO nba_predictions.ml_feature_store_v2 VALUES"
        " ('2024-01-02', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), ('2024-01-02', [1, 1, 1, 1, 1, 1, 1, 1, 0, 1]),"
        " ('2024-01-03', [0, 0, 0, 0, 0, 0, 0, 0, 5, 0])"
    )
    rows = duck.execute(sql, {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 1, 31)}).fetchall()
    assert rows == [(dt.date(2024, 1, 2), 2, 1), (dt.date(2024, 1, 3), 1, 1)]


def test_merge_becomes_duckdb_merge_into_and_counts_rows() -> None:
    sql = only(MERGE_SQL)
    assert sql.startswith('MERGE INTO "nba_analytics"."totals"')
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA nba_analytics")
    conn.execute("CREATE TABLE nba_analytics.totals (player_lookup VARCHAR, points BIGINT)")
    conn.execute("CREATE TABLE nba_analytics.games (player_lookup VARCHAR, game_date DATE, points BIGINT)")
    conn.execute("INSERT INTO nba_analytics.totals VALUES ('a', 10)")
    conn.execute("INSERT INTO nba_analytics.games VALUES ('a', '2024-01-02', 5), ('b', '2024-01-02', 7)")
    assert conn.execute(sql, {"day": dt.date(2024, 1, 2)}).fetchone() == (2,)
    assert conn.execute("SELECT * FROM nba_analytics.totals ORDER BY 1").fetchall() == [("a", 15), ("b", 7)]


def test_date_sub_stays_a_date_and_safe_divide_is_null_on_zero() -> None:
    sql = only("SELECT DATE_SUB(@day, INTERVAL 7 DAY) AS week_ago, SAFE_DIVIDE(@a, @b) AS ratio")
    row = duckdb.connect().execute(sql, {"day": dt.date(2024, 1, 8), "a": 1, "b": 0}).fetchone()
    assert row == (dt.date(2024, 1, 1), None)


def test_numeric_keeps_bigquery_precision() -> None:
    sql = only("SELECT CAST(@x AS NUMERIC) AS x")
    assert "DECIMAL(38, 9)" in sql
    (value,) = duckdb.connect().execute(sql, {"x": "1.123456789"}).fetchone() or (None,)
    assert str(value) == "1.123456789"


@pytest.mark.parametrize(
    ("bigquery", "expected"),
    [
        ("proj.nba_analytics.player_game_summary", "nba_analytics.player_game_summary"),
        ("`proj.nba_analytics.player_game_summary`", '"nba_analytics"."player_game_summary"'),
        ("my-project.ds.t", "ds.t"),
        ("ds.t", "ds.t"),
        ("t", "t"),
    ],
)
def test_table_names_drop_the_project(bigquery: str, expected: str) -> None:
    assert duckdb_table_name(bigquery) == expected


def test_create_schema_keeps_only_the_dataset() -> None:
    assert (
        only("CREATE SCHEMA IF NOT EXISTS `proj.nba_analytics`")
        == 'CREATE SCHEMA IF NOT EXISTS "nba_analytics"'
    )


def test_created_tables_name_their_schema_for_on_demand_creation() -> None:
    (create, insert) = translate("CREATE TABLE `p.new_ds.t` (x INT64); INSERT INTO `p.new_ds.t` VALUES (1)")
    assert create.schemas == ("new_ds",) and not create.is_dml
    assert insert.schemas == () and insert.is_dml


def test_translation_is_cached_by_text() -> None:
    sql = "SELECT 1 AS cached_" + "x" * 8
    from runbook.warehouse.dialect import _translate

    before = _translate.cache_info()
    first = translate(sql)
    assert translate(sql) is first
    after = _translate.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)


def test_split_ignores_semicolons_in_strings_and_comments() -> None:
    script = "SELECT ';' AS a; -- not; a split\nSELECT 2 /* ; */;\n;  \n-- trailing comment only\n"
    assert split_statements(script) == ["SELECT ';' AS a", "-- not; a split\nSELECT 2 /* ; */"]


def test_parameter_names_skip_system_variables_strings_and_identifiers() -> None:
    sql = "SELECT @start, @@dataset_id, '@quoted', `@ident` FROM t WHERE d = @end AND x = @date"
    assert parameter_names(sql) == {"start", "end", "date"}


def test_invalid_sql_is_a_warehouse_error_naming_the_query() -> None:
    with pytest.raises(WarehouseError, match=r'query "SELEC 1 FROM t" failed: not valid BigQuery SQL'):
        translate("SELEC 1 FROM t")


def test_describe_query_is_one_short_line_without_leading_comments() -> None:
    sql = "-- coverage check\nSELECT a,\n       b\nFROM `proj.ds.table_with_a_rather_long_name` WHERE x = 'something quite long'"
    summary = describe_query(sql)
    assert "\n" not in summary and len(summary) == 80 and summary.endswith("…")
    assert summary.startswith("SELECT a, b FROM `proj.ds.")
    assert failure("SELECT 1", "boom\nsecond line") == 'query "SELECT 1" failed: boom second line'


def test_threads_that_parse_at_once_in_a_fresh_process_all_parse() -> None:
    """sqlglot builds parts of a dialect on first use: threads translating at once in a new
    process must not see them half built (a valid statement then failed to parse now and then).
    Without the lock this fails in about half of its runs; with it, never."""
    import subprocess
    import sys

    program = """
import threading
from runbook.warehouse.dialect import translate
sqls = ["CREATE TABLE IF NOT EXISTS a.t (d DATE, p STRING, u FLOAT64, n STRING)",
        "SELECT d, COUNTIF(u IS NOT NULL) AS n FROM a.t WHERE d BETWEEN @start AND @end GROUP BY d"]
errors, go = [], threading.Event()
def work(sql):
    go.wait()
    try:
        translate(sql)
    except Exception as exc:
        errors.append(str(exc))
threads = [threading.Thread(target=work, args=(sqls[i % 2] + " " * i,)) for i in range(16)]
for t in threads:
    t.start()
go.set()
for t in threads:
    t.join()
print(len(errors), errors[:1])
"""
    outputs = [
        subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
        for _ in range(16)
    ]
    assert all(out.startswith("0 ") for out in outputs), outputs
