"""The demo workspace on a real DuckDB file: the synthetic dataset, the BigQuery SQL transpiled to
DuckDB, and the checks of runbook.yaml against the fully built demo range."""

from __future__ import annotations

import datetime as dt
import functools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot import exp

from runbook.config import RunbookConfig, parse_config
from runbook.demo import DEMO_END, DEMO_START, OFF_DAYS, SEASONS, create_demo_workspace, generate_dataset
from runbook.demo.tables import RAW_TABLES, TARGET_TABLES


@functools.cache
def to_duckdb(sql: str) -> tuple[str, frozenset[str]]:
    """BigQuery SQL as DuckDB SQL with ``project.`` dropped from table names, and its parameters.

    Cached: parsing a step costs 10-60 ms, more than running it.
    """
    tree = sqlglot.parse_one(sql, read="bigquery")
    for table in tree.find_all(exp.Table):
        if table.args.get("catalog"):
            table.set("catalog", None)
    return tree.sql(dialect="duckdb"), frozenset(param.name for param in tree.find_all(exp.Parameter))


def run_sql(con: Any, sql: str, **values: dt.date) -> Any:
    text, params = to_duckdb(sql)
    return con.execute(text, {name: values[name] for name in params})


def table_rows(con: Any, names: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {name: con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall() for name in names}


def season_start(day: dt.date) -> dt.date:
    return max(season.start for season in SEASONS if season.start <= day)


def planned_dates(schedule_dates: list[dt.date], bootstrap_days: int) -> list[dt.date]:
    return [day for day in schedule_dates if (day - season_start(day)).days >= bootstrap_days]


def build(con: Any, config: RunbookConfig, root: Path, dates: list[dt.date]) -> None:
    """Run every processor over ``dates`` in dependency order, skipping bootstrap windows."""
    steps = {name: (root / (config.processors[name].sql_file or "")).read_text() for name in config.order()}
    for day in dates:
        for name, sql in steps.items():
            if day in planned_dates([day], config.bootstrap_days(name)):
                run_sql(con, sql, date=day)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_demo_workspace(tmp_path_factory.mktemp("demo")).parent


@pytest.fixture(scope="module")
def config(workspace: Path) -> RunbookConfig:
    return parse_config(yaml.safe_load((workspace / "runbook.yaml").read_text()), "runbook.yaml")


@pytest.fixture(scope="module")
def schedule_dates(workspace: Path) -> list[dt.date]:
    with duckdb.connect(str(workspace / "state" / "warehouse.duckdb"), read_only=True) as con:
        return [
            row[0]
            for row in con.execute("SELECT DISTINCT game_date FROM nba_raw.schedule ORDER BY 1").fetchall()
        ]


@pytest.fixture
def warehouse_copy(workspace: Path, tmp_path: Path) -> Iterator[Any]:
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(workspace / "state" / "warehouse.duckdb", path)
    with duckdb.connect(str(path)) as con:
        yield con


@pytest.fixture(scope="module")
def built(workspace: Path, config: RunbookConfig, schedule_dates: list[dt.date]) -> Iterator[Any]:
    """The demo warehouse with the whole pipeline run over the whole demo range."""
    path = workspace.parent / "built.duckdb"
    shutil.copy(workspace / "state" / "warehouse.duckdb", path)
    with duckdb.connect(str(path)) as con:
        build(con, config, workspace, schedule_dates)
        yield con


def test_same_seed_gives_the_same_rows() -> None:
    contents = []
    for seed in (7, 7, 8):
        with duckdb.connect() as con:
            generate_dataset(con, seed=seed)
            contents.append(table_rows(con, RAW_TABLES))
    assert contents[0] == contents[1]
    assert contents[0] != contents[2]


def test_dataset_shape(workspace: Path, schedule_dates: list[dt.date]) -> None:
    for season in SEASONS:
        days = [day for day in schedule_dates if season.start <= day <= season.end]
        assert days[0] == season.start
        assert 45 <= len(days) <= 70
    assert 120 <= len(schedule_dates) <= 200
    for day in OFF_DAYS:
        assert DEMO_START < day < DEMO_END
        assert day not in schedule_dates
    with duckdb.connect(str(workspace / "state" / "warehouse.duckdb"), read_only=True) as con:
        teams, players, dnp = con.execute(
            """SELECT COUNT(DISTINCT team_abbr), COUNT(DISTINCT player_lookup),
                      AVG(CAST(dnp_reason IS NOT NULL AS INTEGER))
               FROM nba_raw.bdl_player_boxscores"""
        ).fetchone()
        dnp_minutes = con.execute(
            "SELECT DISTINCT COALESCE(minutes, 'NULL') FROM nba_raw.bdl_player_boxscores WHERE dnp_reason IS NOT NULL"
        ).fetchall()
        for table in TARGET_TABLES:
            assert con.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,)
    assert teams == 30
    assert 420 <= players <= 480
    assert 0.35 <= dnp <= 0.45
    assert sorted(dnp_minutes) == [("0:00",), ("NULL",)]


def test_runbook_yaml_is_valid(workspace: Path, config: RunbookConfig) -> None:
    assert config.warehouse.kind == "duckdb"
    assert config.warehouse.path == "state/warehouse.duckdb"
    assert config.pools == {"warehouse": 2}
    assert config.calendar.seasons == [season.start for season in SEASONS]
    pcf = config.processors["player_composite_factors"]
    assert len(pcf.needs) == 4
    assert [ready.table.rsplit(".", 1)[1] for ready in pcf.ready] == pcf.needs
    assert config.bootstrap_days("player_composite_factors") == 14
    assert config.bootstrap_days("ml_feature_store_v2") == 14
    assert config.bootstrap_days("player_game_summary") == 0
    checks = [check for proc in config.processors.values() for check in proc.checks]
    range_wide = [check for check in checks if check.kind == "sql" and not check.per_date]
    assert [check.severity for check in range_wide].count("warn") == 1
    assert {check.kind for check in checks} == {"sql", "volume", "freshness"}
    assert sum(check.per_date for check in checks) >= 4
    for proc in config.processors.values():
        assert proc.sql_file and (workspace / proc.sql_file).is_file()


def test_calendar_and_extent_queries(
    warehouse_copy: Any, config: RunbookConfig, schedule_dates: list[dt.date]
) -> None:
    assert config.calendar.query and config.processors["player_game_summary"].extent
    days = run_sql(warehouse_copy, config.calendar.query, start=DEMO_START, end=DEMO_END).fetchall()
    assert [row[0] for row in days] == schedule_dates
    cursor = run_sql(warehouse_copy, config.processors["player_game_summary"].extent)
    assert [column[0] for column in cursor.description] == ["first_date", "last_date"]
    assert cursor.fetchall() == [(DEMO_START, DEMO_END)]


def test_every_step_runs_and_is_idempotent(
    warehouse_copy: Any, workspace: Path, config: RunbookConfig, schedule_dates: list[dt.date]
) -> None:
    first_days = schedule_dates[:16]  # past the 14-day bootstrap, so Phase 4 runs too
    build(warehouse_copy, config, workspace, first_days)
    once = table_rows(warehouse_copy, TARGET_TABLES)
    assert all(once.values()), [name for name, rows in once.items() if not rows]
    build(warehouse_copy, config, workspace, first_days)
    assert table_rows(warehouse_copy, TARGET_TABLES) == once


def evaluate(condition: str, values: dict[str, Any]) -> bool:
    """``pct_populated >= 45``, ``dates >= 0.94 * expected_dates``: names replaced by values."""
    names = set(re.findall(r"[A-Za-z_]\w*", condition))
    assert names <= set(values), f"unknown name in {condition!r}"
    return bool(eval(condition, {"__builtins__": {}}, values))


def test_checks_pass_on_the_full_demo_range(
    built: Any, config: RunbookConfig, schedule_dates: list[dt.date]
) -> None:
    """The range-wide SQL checks give one row that meets their conditions; the per-date ones give
    one row per built date, each meeting the conditions that need no baseline from history."""
    checked = []
    for name, proc in config.processors.items():
        planned = planned_dates(schedule_dates, config.bootstrap_days(name))
        for check in proc.checks:
            if check.kind != "sql":
                continue
            cursor = run_sql(built, check.query, start=DEMO_START, end=DEMO_END)
            columns = [column[0] for column in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            if check.per_date:
                assert {row["date"] for row in rows} >= set(planned), check.name
                plain = [c for c in check.expect if "(" not in c]  # median(...) etc. need history
                for row in rows:
                    for condition in plain:
                        assert evaluate(condition, row), f"{name}.{check.name}: {condition} with {row}"
            else:
                assert len(rows) == 1, check.name
                values = {**rows[0], "expected_dates": len(planned)}
                for condition in check.expect:
                    assert evaluate(condition, values), f"{name}.{check.name}: {condition} with {values}"
            checked.append(f"{name}.{check.name}")
    assert len(checked) == 6 + sum(
        check.per_date for p in config.processors.values() for check in p.checks if check.kind == "sql"
    )
