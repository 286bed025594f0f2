"""Coverage: what was built, by which run and code version; gaps and stale dates; --only-gaps/-stale.

The CLI tests run real backfills in subprocesses; the others write fixed states through the Store
API and read them back through runbook.coverage, on SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from core_helpers import query

from runbook.config import parse_config
from runbook.engine.calendar import Calendar
from runbook.snapshots import to_data
from runbook.snapshots.coverage import coverage_snapshot, day_states, processor_coverage
from runbook.state.store import Store

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
name: coverage
calendar:
  start: 2026-01-01
  end: 2026-01-20
  off_weekdays: [sun]
processors:
  games:
    command: "true"
    version: v1
"""
GAPS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-14", "2026-01-15", "2026-01-16", "2026-01-17", "2026-01-19", "2026-01-20"]  # fmt: skip
STALE = ["2026-01-05", "2026-01-06", "2026-01-07"]


def succeeded_dates(db: Path, run_id: int) -> list[str]:
    rows = query(
        db, "SELECT date FROM task WHERE run_id = ? AND status = 'succeeded' ORDER BY date", (run_id,)
    )
    return [row["date"] for row in rows]


def test_coverage_finds_gaps_and_stale_dates_and_only_gaps_fills_them(
    make_workspace: Callable[..., Any],
) -> None:
    ws = make_workspace(CONFIG)
    ws.runbook("run", "games", "--start", "2026-01-05", "--end", "2026-01-10", check=True)
    ws.write(CONFIG.replace("version: v1", "version: v2"))
    ws.runbook("run", "games", "--start", "2026-01-08", "--end", "2026-01-13", check=True)

    view = ws.cli("coverage", "games", "--json", check=True).json()
    summary = view["summary"]
    assert (view["start"], view["end"], view["code_version"]) == ("2026-01-01", "2026-01-20", "v2")
    assert summary | {"calendar_skips": None} == {
        "calendar_dates": 20, "expected": 17, "built": 8, "current": 5, "stale": 3, "gaps": 9, "failed": 0,
        "blocked": 0, "percent": 47.0, "calendar_skips": None, "gap_reasons": {},
    }  # fmt: skip
    assert summary["calendar_skips"] == {"off_day": 3}
    assert view["gaps"] == [
        {"start": "2026-01-01", "end": "2026-01-03", "dates": 3},
        {"start": "2026-01-14", "end": "2026-01-20", "dates": 6},
    ]
    assert view["stale"] == [
        {"start": "2026-01-05", "end": "2026-01-07", "dates": 3, "code_versions": ["v1"]}
    ]
    by_date = {d["date"]: d for d in view["dates"]}
    assert by_date["2026-01-05"] | {"built_at": None} == {
        "date": "2026-01-05", "expected": True, "calendar_skip": None, "built": True, "stale": True, "run_id": 1,
        "built_at": None, "code_version": "v1", "rows_affected": None, "last_attempt": "succeeded",
        "skip_reason": None, "checks": [],
    }  # fmt: skip
    assert by_date["2026-01-05"]["built_at"].startswith(dt.date.today().isoformat()[:4])
    assert (by_date["2026-01-09"]["run_id"], by_date["2026-01-09"]["code_version"]) == (2, "v2")
    assert by_date["2026-01-04"]["calendar_skip"] == "off_day" and not by_date["2026-01-04"]["expected"]
    assert (
        view["commands"]["fill_gaps"] == "runbook run games --only-gaps --start 2026-01-01 --end 2026-01-20"
    )

    text = ws.cli("coverage", "games", check=True).stdout
    assert "2026-01-14..2026-01-20: 6 dates never built" in text
    assert "2026-01-05..2026-01-07: 3 dates built with v1" in text
    dated = ws.runbook(
        "coverage", "games", "--dates", "--start", "2026-01-04", "--end", "2026-01-06", check=True
    ).stdout
    assert "2026-01-04  off_day" in dated and "2026-01-05  stale     run 1" in dated

    ws.runbook("run", "games", "--only-gaps", check=True)
    assert succeeded_dates(ws.db, 3) == GAPS
    view = ws.cli("coverage", "games", "--json", check=True).json()
    assert (view["summary"]["gaps"], view["summary"]["stale"], view["gaps"]) == (0, 3, [])

    ws.runbook("run", "games", "--only-stale", check=True)
    assert succeeded_dates(ws.db, 4) == STALE
    view = ws.cli("coverage", "games", "--json", check=True).json()
    assert view["summary"] | {"calendar_skips": None, "gap_reasons": None} == {
        "calendar_dates": 20, "expected": 17, "built": 17, "current": 17, "stale": 0, "gaps": 0, "failed": 0,
        "blocked": 0, "percent": 100.0, "calendar_skips": None, "gap_reasons": None,
    }  # fmt: skip

    store = Store.open(f"sqlite:///{ws.db}")
    store.add_check_result(
        run_id=1, processor="games", check_name="rows", severity="block", passed=False,
        start_date="2026-01-05", end_date="2026-01-10", error="no rows",
    )  # fmt: skip
    store.close()
    history = ws.cli("history", "--json", check=True).json()["runs"]
    by_id = {run["id"]: run for run in history}
    assert by_id[1]["checks"] == {"passed": 0, "failed": 1, "failing": ["games.rows"]}
    assert by_id[2]["checks"] == {"passed": 0, "failed": 0, "failing": []}
    (third,) = by_id[3]["per_processor"]
    assert (third["name"], third["progress"]["skipped"], third["progress"]["succeeded"]) == ("games", 11, 9)
    assert third["skipped"] == {"not_a_gap": 8, "off_day": 3}
    (first,) = by_id[1]["per_processor"]
    assert (first["progress"]["total"], first["progress"]["succeeded"]) == (6, 6)


def test_coverage_of_an_unknown_processor_is_a_usage_error(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(CONFIG)
    result = ws.cli("coverage", "gamez")
    assert (
        result.code == 2
        and result.stderr.strip() == "runbook: error: unknown processor 'gamez' (known: games)"
    )


CHUNKED = """\
name: chunks
processors:
  games:
    command: "true"
    version: v2
    batch_days: 3
"""


def _fill(store: Store) -> None:
    """Run 1 built 01..06 in chunks of 3 with v1; run 2 rebuilt 04..06 with v2 and failed 07..09."""
    first = store.create_run(processors=["games"], start_date="2026-01-01", end_date="2026-01-06")
    second = store.create_run(processors=["games"], start_date="2026-01-04", end_date="2026-01-09")
    assert first.id is not None and second.id is not None
    finished = dt.datetime(2026, 1, 12, 8, 0, tzinfo=dt.UTC)

    def task(
        first_day: str, last_day: str, status: str, version: str | None, rows: int | None
    ) -> dict[str, Any]:
        return {
            "processor": "games", "date": first_day, "end_date": last_day, "status": status, "code_version": version,
            "rows_affected": rows, "finished_at": finished, "skip_reason": None,
        }  # fmt: skip

    store.add_tasks(first.id, [task("2026-01-01", "2026-01-03", "succeeded", "v1", 30), task("2026-01-04", "2026-01-06", "succeeded", "v1", 31)])  # fmt: skip
    store.add_tasks(second.id, [task("2026-01-04", "2026-01-06", "succeeded", "v2", 32), task("2026-01-07", "2026-01-09", "failed", "v2", None)])  # fmt: skip
    for run_id, first_day, last_day, passed in ((first.id, "2026-01-01", "2026-01-09", True), (second.id, "2026-01-05", "2026-01-06", False)):  # fmt: skip
        store.add_check_result(
            run_id=run_id, processor="games", check_name="rows", severity="warn", passed=passed,
            start_date=first_day, end_date=last_day, at=finished,
        )  # fmt: skip


def _view(store: Store, start: dt.date, end: dt.date) -> dict[str, Any]:
    config = parse_config(
        {"name": "chunks", "processors": {"games": {"command": "true", "version": "v2", "batch_days": 3}}},
        "t",
    )
    found = processor_coverage(store, config, Calendar(config.calendar), "games", start, end, "v2")
    checks = store.check_results_overlapping("games", start.isoformat(), end.isoformat())
    return dict(to_data(coverage_snapshot(found, checks)))


def test_chunks_count_for_every_date_they_cover_and_checks_for_the_dates_in_their_range(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    _fill(store)
    # A range starting inside a chunk still sees the chunk that began before it.
    view = _view(store, dt.date(2026, 1, 2), dt.date(2026, 1, 10))
    dates = {d["date"]: d for d in view["dates"]}
    assert [d for d in dates if dates[d]["built"]] == [
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
        "2026-01-05",
        "2026-01-06",
    ]
    assert (
        dates["2026-01-02"]["run_id"],
        dates["2026-01-02"]["code_version"],
        dates["2026-01-02"]["stale"],
    ) == (1, "v1", True)
    assert (dates["2026-01-05"]["run_id"], dates["2026-01-05"]["stale"]) == (2, False)
    assert dates["2026-01-08"]["last_attempt"] == "failed" and not dates["2026-01-08"]["built"]
    assert view["summary"]["failed"] == 3
    assert view["gaps"] == [{"start": "2026-01-07", "end": "2026-01-10", "dates": 4}]
    assert view["stale"] == [
        {"start": "2026-01-02", "end": "2026-01-03", "dates": 2, "code_versions": ["v1"]}
    ]
    assert [c["passed"] for c in dates["2026-01-05"]["checks"]] == [False]  # the newer result wins
    assert [c["passed"] for c in dates["2026-01-04"]["checks"]] == [True]
    assert dates["2026-01-10"]["checks"] == []
    assert view["failing_checks"] == [
        {"check": "rows", "start": "2026-01-05", "end": "2026-01-06", "dates": 2}
    ]
    store.close()


@pytest.mark.postgres
def test_postgresql_reads_the_same_coverage_as_sqlite(tmp_path: Path, pg_url: str) -> None:
    """The store reads the newest task per date differently on PostgreSQL (GROUP BY) and SQLite
    (a loose index scan): both must give the same coverage."""
    views = []
    for url in (f"sqlite:///{tmp_path / 'state.db'}", pg_url):
        store = Store.open(url)
        _fill(store)
        states = day_states(store, "games", dt.date(2026, 1, 1), dt.date(2026, 1, 9))
        views.append(
            (
                {day: (s.built.id if s.built else None, s.last_attempt) for day, s in states.items()},
                _view(store, dt.date(2026, 1, 1), dt.date(2026, 1, 10)),
            )
        )
        store.close()
    assert views[0] == views[1]


def test_the_history_benchmark_runs_at_a_small_scale(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "history_scale.py"), "--runs", "8", "--tasks", "4000", "--repeat", "1", "--json", "--keep", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    figures = json.loads(result.stdout)
    assert figures["store"]["run"] == 8 and figures["store"]["task"] > 3000
    assert set(figures["library_ms"]) == {
        "status (JSON data)",
        "history (50 runs, JSON data)",
        "show (newest run, JSON data)",
        "coverage player_game (4 years)",
        "handoff (Markdown)",
        "handoff (brief)",
    }
    assert all(ms > 0 for ms in figures["library_ms"].values())


@pytest.mark.postgres
def test_postgresql_reads_the_same_heat_map_and_cells_as_sqlite(tmp_path: Path, pg_url: str) -> None:
    """The heat map's one statement for every processor, the live tasks and a cell's attempts
    read the same on both backends (chunks included)."""
    from runbook.snapshots.coverage import processor_coverages
    from runbook.snapshots.heatmap import heat_map, live_states

    config = parse_config(
        {"name": "chunks", "processors": {"games": {"command": "true", "version": "v2", "batch_days": 3}}},
        "t",
    )
    start, end = dt.date(2026, 1, 1), dt.date(2026, 1, 12)
    found = []
    for url in (f"sqlite:///{tmp_path / 'state.db'}", pg_url):
        store = Store.open(url)
        _fill(store)
        live = store.create_run(processors=["games"], start_date="2026-01-10", end_date="2026-01-12")
        assert live.id is not None
        store.add_tasks(live.id, [{"processor": "games", "date": "2026-01-10", "end_date": "2026-01-12", "status": "running"}])  # fmt: skip
        coverages = processor_coverages(
            store, config, Calendar(config.calendar), ["games"], start, end, {"games": "v2"}
        )
        tasks = live_states(store.live_task_dates([live.id], start.isoformat(), end.isoformat()), start, end)
        attempts, total = store.tasks_covering("games", "2026-01-08", lookback_days=2, limit=10)
        found.append(
            (
                to_data(heat_map(config, coverages, start, end, live=tasks)),
                [(t.run_id, t.date, t.end_date, t.status) for t in attempts],
                total,
            )
        )
        store.close()
    assert found[0] == found[1]
    spans = [(s["state"], s["start"], s["dates"]) for s in found[0][0]["rows"][0]["spans"]]
    assert spans == [("stale", "2026-01-01", 3), ("succeeded", "2026-01-04", 3), ("failed", "2026-01-07", 3), ("running", "2026-01-10", 3)]  # fmt: skip
    assert found[0][1:] == ([(2, "2026-01-07", "2026-01-09", "failed")], 1)


@pytest.mark.postgres
def test_the_runs_task_stats_and_the_fingerprint_read_alike_on_both_backends(
    tmp_path: Path, pg_url: str
) -> None:
    """The handoff's one read of the runs' tasks counts a chunk's dates (three per chunk here) on
    both backends; the fingerprint ``runbook serve`` keeps the handoff by stays the same while
    nothing changes and moves when a note or an event is added."""
    found = []
    for url in (f"sqlite:///{tmp_path / 'state.db'}", pg_url):
        store = Store.open(url)
        _fill(store)
        stats = store.run_processor_stats([1, 2])
        found.append(sorted((row["run_id"], row["status"], row["tasks"], row["days"]) for row in stats))
        assert store.outcomes_of(stats, [1, 2]) == store.outcomes([1, 2])
        before = store.fingerprint()
        assert store.fingerprint() == before
        store.add_note(None, "issue", "a note", dt.datetime(2026, 1, 12, 9, 0, tzinfo=dt.UTC))
        noted = store.fingerprint()
        assert noted != before
        store.add_event("session_started", "an event")
        assert store.fingerprint() != noted
        store.close()
    assert found[0] == found[1] == [(1, "succeeded", 2, 6), (2, "failed", 1, 3), (2, "succeeded", 1, 3)]
