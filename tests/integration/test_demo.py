"""`runbook demo` end to end in a temporary folder: the whole pipeline on the synthetic DuckDB
warehouse with 2 workers, every check passing; then a second `runbook demo` that resumes,
skipping every built date as already_done. (How long it takes is printed, not asserted: speed is
measured in bench/.)"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from core_helpers import query

DEMO_CHECKS = {
    ("player_game_summary", "usage_rate_coverage"),
    ("player_game_summary", "minutes_played_coverage"),
    ("player_game_summary", "no_duplicates"),
    ("player_game_summary", "date_coverage"),
    ("ml_feature_store_v2", "usage_spike_non_zero"),
    ("ml_feature_store_v2", "date_coverage"),
    # the seeds' checks per date (docs/checks.md)
    ("player_game_summary", "usage_rate_coverage_per_date"),
    ("player_game_summary", "minutes_played_coverage_per_date"),
    ("player_game_summary", "no_duplicates_per_date"),
    ("player_game_summary", "rows_per_date"),
    ("ml_feature_store_v2", "usage_spike_per_date"),
    ("ml_feature_store_v2", "newest_date"),
}


def test_demo_runs_everything_then_resumes_instead_of_redoing(make_workspace: Any) -> None:
    ws = make_workspace("processors: {unused: {command: 'true'}}\n")
    db = ws.root / "demo" / "state" / "runbook.db"

    began = time.monotonic()
    first = ws.runbook("demo", "--dir", "demo", "--workers", "2", timeout=300)
    first_seconds = time.monotonic() - began
    print(f"\nfirst `runbook demo`: {first_seconds:.1f}s")
    assert first.code == 0, first.stdout + first.stderr

    out = first.stdout
    assert "Check results (run 1):" in out
    assert "FAIL" not in out and " warn " not in out
    for processor, check in DEMO_CHECKS:
        assert f"pass  {processor}.{check} (" in out
    assert "run 1 succeeded in" in out
    for command in ("status", "history", "handoff"):
        assert f"runbook -c demo/runbook.yaml {command}" in out

    stored = query(db, "SELECT processor, check_name, passed, run_id, metrics FROM check_result")
    assert {(r["processor"], r["check_name"]) for r in stored} == DEMO_CHECKS
    assert all(r["passed"] == 1 and r["run_id"] == 1 for r in stored), stored
    usage = next(r for r in stored if r["check_name"] == "usage_rate_coverage")
    assert json.loads(usage["metrics"])["pct_populated"] >= 45
    # Per-date checks ran window by window as the dates were built, and judged every built date.
    per_date = "SELECT COUNT(*) AS n, SUM(passed) AS ok FROM check_date WHERE check_name = 'usage_rate_coverage_per_date'"
    judged = query(db, per_date)
    assert judged[0]["n"] == judged[0]["ok"] > 100
    first_tasks = Counter(
        (r["status"], r["skip_reason"]) for r in query(db, "SELECT * FROM task WHERE run_id = 1")
    )
    assert first_tasks[("failed", None)] == 0 and first_tasks[("blocked", None)] == 0
    assert first_tasks[("skipped", "upstream_missing")] == 0
    built = first_tasks[("succeeded", None)]
    assert built > 500

    began = time.monotonic()
    second = ws.runbook("demo", "--dir", "demo", timeout=300)
    second_seconds = time.monotonic() - began
    print(f"second `runbook demo`: {second_seconds:.1f}s (resumed)")
    assert second.code == 0, second.stdout + second.stderr
    assert "0 step(s) to run" in second.stdout
    assert f"{built} already_done" in " ".join(second.stdout.split())
    assert "Check results (latest, from earlier runs):" in second.stdout
    second_tasks = Counter(
        (r["status"], r["skip_reason"]) for r in query(db, "SELECT * FROM task WHERE run_id = 2")
    )
    assert second_tasks[("skipped", "already_done")] == built
    assert sum(count for (status, _), count in second_tasks.items() if status != "skipped") == 0
    assert second_seconds < first_seconds / 3, (first_seconds, second_seconds)

    status = ws.runbook("-c", "demo/runbook.yaml", "status", "--json")
    assert [run["status"] for run in status.json()["runs"]] == ["succeeded", "succeeded"]


def test_demo_refuses_a_folder_that_is_not_a_demo(make_workspace: Any) -> None:
    ws = make_workspace("name: precious\nprocessors: {p: {command: 'true'}}\n")
    (ws.root / "data.csv").write_text("keep me")
    for args in (["--fresh"], []):
        result = ws.runbook("demo", "--dir", ".", *args)
        assert result.code == 2
        assert "is not a runbook demo workspace" in result.stderr and "not touching it" in result.stderr
    (ws.root / "other").mkdir()
    (ws.root / "other" / "notes.txt").write_text("mine")
    result = ws.runbook("demo", "--dir", "other", "--fresh")
    assert result.code == 2 and "--fresh: other is not a runbook demo workspace" in result.stderr
    assert sorted(p.name for p in ws.root.iterdir()) == ["data.csv", "other", "runbook.yaml"]
    assert (ws.root / "other" / "notes.txt").read_text() == "mine"
