"""The DuckDB warehouse on real DuckDB files: seeds' queries, DML counts, binding, errors, threads."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import warehouse_seeds as seeds

from runbook.config import WarehouseConfig
from runbook.errors import TransientWarehouseError, WarehouseError
from runbook.warehouse import Warehouse, open_warehouse
from runbook.warehouse import duckdb as duckdb_adapter
from runbook.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb", retry_base_seconds=0.001)
    seeds.load(wh)
    yield wh
    wh.close()


def test_seed_queries_answer_like_plain_python(warehouse: DuckDBWarehouse) -> None:
    assert isinstance(warehouse, Warehouse) and warehouse.kind == "duckdb"
    assert warehouse.query(seeds.COVERAGE_SQL, {"start": seeds.START}) == seeds.expected_coverage()
    assert warehouse.query(seeds.DUPLICATES_SQL, {"start": seeds.START}) == seeds.expected_duplicates()
    params = {"start": seeds.START, "end": seeds.END}
    assert warehouse.query(seeds.FEATURES_SQL, params) == seeds.expected_features()
    assert warehouse.query(seeds.FEATURES_SUM_IF_SQL, params) == seeds.expected_features()


def test_merge_returns_rows_affected_and_applies(warehouse: DuckDBWarehouse) -> None:
    day = dt.date(2024, 1, 1)
    assert warehouse.execute(seeds.MERGE_SQL, {"day": day}) == len(seeds.PLAYERS)
    rows = warehouse.query(f"SELECT * FROM `{seeds.TOTALS}` WHERE player_lookup = @p", {"p": "lebronjames"})
    assert rows == [{"player_lookup": "lebronjames", "points": 110, "games": 5}]


def test_script_returns_the_last_dml_count(warehouse: DuckDBWarehouse) -> None:
    script = f"""
        DELETE FROM `{seeds.TOTALS}` WHERE TRUE;  -- start clean; really
        INSERT INTO `{seeds.TOTALS}` (player_lookup, points, games) VALUES ('a', 1, 1), ('b', 2, 1), ('c', 3, 1);
        UPDATE `{seeds.TOTALS}` SET points = points + 1 WHERE points >= @min;
        CREATE TABLE `proj.scratch.after` (x INT64)
    """
    assert warehouse.execute(script, {"min": 2}) == 2
    assert warehouse.query(f"SELECT SUM(points) AS total FROM `{seeds.TOTALS}`") == [{"total": 8}]
    assert warehouse.execute("CREATE TABLE `proj.scratch.t` (x INT64)") is None


def test_values_come_back_as_python_types(warehouse: DuckDBWarehouse) -> None:
    warehouse.execute("CREATE TABLE `proj.types.t` (d DATE, n NUMERIC, a ARRAY<INT64>, b BOOL, s STRING)")
    warehouse.load_rows("proj.types.t", [{"d": dt.date(2024, 2, 29), "n": 2.5, "a": [1, 2], "b": True}])
    rows = warehouse.query(
        "SELECT d, n, a, b, s, DATE_SUB(d, INTERVAL 1 DAY) AS before, SAFE_DIVIDE(n, 0) AS ratio FROM `proj.types.t`"
    )
    assert rows == [
        {
            "d": dt.date(2024, 2, 29),
            "n": 2.5,
            "a": [1, 2],
            "b": True,
            "s": None,
            "before": dt.date(2024, 2, 28),
            "ratio": None,
        }
    ]
    assert type(rows[0]["n"]) is float


def test_load_rows_in_chunks_and_fills_missing_keys(
    warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_adapter, "LOAD_CHUNK_ROWS", 500)
    rows = [{"player_lookup": f"p{i}", "points": i} for i in range(1234)]
    rows.append({"player_lookup": "late", "games": 9})
    warehouse.load_rows(seeds.TOTALS, rows)
    warehouse.load_rows(seeds.TOTALS, [])
    got = warehouse.query(
        f"SELECT COUNT(*) AS n, SUM(points) AS points, COUNTIF(games IS NULL) AS no_games FROM `{seeds.TOTALS}`"
    )
    assert got == [{"n": 1236, "points": sum(range(1234)) + 100, "no_games": 1234}]


def test_load_rows_takes_mixed_python_values_per_column(warehouse: DuckDBWarehouse) -> None:
    warehouse.execute("CREATE TABLE `proj.mixed.t` (x FLOAT64, d DATE, a ARRAY<FLOAT64>, never STRING)")
    rows = [
        {"x": 1, "d": "2024-01-01", "a": [1, 2.5], "never": None},
        {"x": 2.5, "d": dt.date(2024, 1, 2), "a": None, "never": None},
        {"x": None, "d": None, "a": [], "never": None},
    ]
    warehouse.load_rows("`proj.mixed.t`", rows)
    assert warehouse.query("SELECT * FROM `proj.mixed.t`") == [
        {"x": 1.0, "d": dt.date(2024, 1, 1), "a": [1.0, 2.5], "never": None},
        {"x": 2.5, "d": dt.date(2024, 1, 2), "a": None, "never": None},
        {"x": None, "d": None, "a": [], "never": None},
    ]


def test_load_rows_into_a_missing_table_names_it(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseError, match=r"INSERT INTO proj.nba_analytics.nope \(1 rows\)"):
        warehouse.load_rows("proj.nba_analytics.nope", [{"x": 1}])


def test_list_parameters_bind_as_arrays(warehouse: DuckDBWarehouse) -> None:
    sql = (
        f"SELECT DISTINCT player_lookup FROM `{seeds.PGS}` WHERE player_lookup IN UNNEST(@players) ORDER BY 1"
    )
    assert warehouse.query(sql, {"players": ["jokic", "giannis", "nobody"]}) == [
        {"player_lookup": "giannis"},
        {"player_lookup": "jokic"},
    ]


def test_injection_in_a_date_parameter_is_data(warehouse: DuckDBWarehouse) -> None:
    attack = "2024-01-01' OR '1'='1"
    with pytest.raises(WarehouseError, match="Conversion Error"):
        warehouse.query(f"SELECT COUNT(*) AS n FROM `{seeds.PGS}` WHERE game_date = @day", {"day": attack})
    by_name = f"SELECT COUNT(*) AS n FROM `{seeds.PGS}` WHERE player_lookup = @who"
    assert warehouse.query(by_name, {"who": "x' OR '1'='1"}) == [{"n": 0}]
    assert warehouse.query(by_name, {"who": f"x'; DROP TABLE `{seeds.PGS}`; --"}) == [{"n": 0}]
    assert warehouse.query(f"SELECT COUNT(*) AS n FROM `{seeds.PGS}`") == [
        {"n": len(seeds.player_game_rows())}
    ]


def test_a_missing_parameter_is_named(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseError, match="no value for parameter @end"):
        warehouse.query(seeds.FEATURES_SQL, {"start": seeds.START})


def test_missing_table_error_names_query_and_table(warehouse: DuckDBWarehouse) -> None:
    sql = "SELECT COUNT(*) AS n\n  FROM `proj.nba_analytics.nope` WHERE game_date >= @start"
    with pytest.raises(WarehouseError) as caught:
        warehouse.query(sql, {"start": seeds.START})
    message = str(caught.value)
    assert message == (
        'query "SELECT COUNT(*) AS n FROM `proj.nba_analytics.nope` WHERE game_date >= @start" failed: '
        "table proj.nba_analytics.nope does not exist"
    )
    assert not isinstance(caught.value, TransientWarehouseError)
    assert caught.value.__cause__ is not None


def test_tables_in_a_new_dataset_get_their_schema(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    first = DuckDBWarehouse(path)
    first.execute("CREATE TABLE `other-project.fresh_ds.t` AS SELECT 1 AS x")
    first.close()
    with pytest.raises(WarehouseError, match="is closed"):
        first.query("SELECT 1")
    first.close()
    reopened = DuckDBWarehouse(path)
    assert reopened.query("SELECT x FROM fresh_ds.t") == [{"x": 1}]
    reopened.close()


def test_concurrent_calls_from_threads_are_safe(warehouse: DuckDBWarehouse) -> None:
    warehouse.execute(
        "CREATE TABLE `proj.ops.counter` (k INT64, n INT64); INSERT INTO `proj.ops.counter` VALUES (1, 0)"
    )
    warehouse.execute("CREATE TABLE `proj.ops.log` (worker INT64, step INT64)")
    errors: list[BaseException] = []
    threads_count, steps = 8, 15

    def work(worker: int) -> None:
        try:
            for step in range(steps):
                assert warehouse.execute("UPDATE `proj.ops.counter` SET n = n + 1 WHERE k = 1") == 1
                warehouse.load_rows("proj.ops.log", [{"worker": worker, "step": step}])
                got = warehouse.query(
                    "SELECT COUNT(*) AS n FROM `proj.ops.log` WHERE worker = @w", {"w": worker}
                )
                assert got == [{"n": step + 1}]
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert warehouse.query("SELECT n FROM `proj.ops.counter`") == [{"n": threads_count * steps}]
    assert warehouse.query("SELECT COUNT(*) AS n FROM `proj.ops.log`") == [{"n": threads_count * steps}]


def test_a_write_conflict_is_retried_after_a_backoff(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    other = duckdb.connect(str(path))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        other.execute("COMMIT")  # the competing transaction finishes while we back off

    warehouse = DuckDBWarehouse(path, retry_base_seconds=0.5, sleep=sleep)
    warehouse.execute("CREATE TABLE `p.ds.t` (k INT64, n INT64); INSERT INTO `p.ds.t` VALUES (1, 0)")
    other.execute("BEGIN TRANSACTION; UPDATE ds.t SET n = n + 10 WHERE k = 1")
    assert warehouse.execute("UPDATE `p.ds.t` SET n = n + 1 WHERE k = 1") == 1
    assert len(waits) == 1 and 0.25 <= waits[0] <= 0.5
    assert warehouse.query("SELECT n FROM `p.ds.t`") == [{"n": 11}]
    other.execute("BEGIN TRANSACTION; UPDATE ds.t SET n = 0 WHERE k = 1")
    stuck = DuckDBWarehouse(path, max_retries=2, retry_base_seconds=0.001)
    with pytest.raises(TransientWarehouseError, match=r"Conflict on update.*gave up after 3 tries"):
        stuck.execute("UPDATE `p.ds.t` SET n = n + 1 WHERE k = 1")
    other.close()
    stuck.close()
    warehouse.close()


def test_open_warehouse_puts_a_relative_path_under_the_root(tmp_path: Path) -> None:
    config = WarehouseConfig(kind="duckdb", path="state/wh.duckdb", max_retries=2)
    warehouse = open_warehouse(config, tmp_path, {})
    try:
        assert isinstance(warehouse, DuckDBWarehouse) and warehouse.path == tmp_path / "state" / "wh.duckdb"
        warehouse.execute("CREATE TABLE `p.d.t` (x INT64)")
    finally:
        warehouse.close()
    assert (tmp_path / "state" / "wh.duckdb").exists()


def test_an_unopenable_file_is_a_warehouse_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db.duckdb").write_text("this is not a DuckDB file")
    with pytest.raises(WarehouseError, match="cannot open the DuckDB warehouse"):
        DuckDBWarehouse(tmp_path / "not-a-db.duckdb")


def test_a_file_another_process_holds_is_waited_for(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); "
         "time.sleep(1.5); c.close()"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    warehouse = DuckDBWarehouse(path, max_retries=8, retry_base_seconds=0.2, sleep=sleep)
    try:
        assert waits, "the lock of the other process was met and waited for"
        assert holder.wait(10) == 0
        warehouse.execute("CREATE TABLE t (x INT64)")
    finally:
        warehouse.close()
        holder.stdout.close()
    with pytest.raises(WarehouseError, match="Could not set lock"):
        other = subprocess.Popen(
            [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); "
             "time.sleep(5)"], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert other.stdout is not None and other.stdout.readline().strip() == "held"
            DuckDBWarehouse(path, max_retries=1, retry_base_seconds=0.01)
        finally:
            other.kill()
            other.wait()
            assert other.stdout is not None
            other.stdout.close()


def test_run_job_records_the_rows_affected(tmp_path: Path) -> None:
    from runbook.warehouse import JobSpec

    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        warehouse.execute("CREATE TABLE `p.ds.t` (d DATE, n INT64)")
        script = "INSERT INTO `p.ds.t` VALUES (@date, 1), (@date, 2); DELETE FROM `p.ds.t` WHERE n = 1"
        result = warehouse.run_job(script, {"date": dt.date(2024, 1, 1)}, JobSpec("runbook_r1_t1_a1_x"))
        assert result.rows_affected == 1 and result.job_ids == ["runbook_r1_t1_a1_x"]
        assert result.bytes_billed is None and warehouse.estimate("SELECT 1", {}) is None
    finally:
        warehouse.close()
