"""The next-action engine's table and its range splitting, on hand-made facts (the situations
themselves are built with the real CLI in tests/integration/test_next_actions.py)."""

from __future__ import annotations

from typing import Any

from runbook.reports.actions import engine, model, situations, wording
from runbook.snapshots.model import CheckSummary, Owner, Progress, RunSnapshot


def run(run_id: int, status: str, processors: list[str]) -> RunSnapshot:
    return RunSnapshot(
        id=run_id, status=status, stored_status=status, processors=processors, start_date="2024-01-01",
        end_date="2024-01-10", alive=None, owner=Owner("h", 1), workers=1, log_path=None, progress=Progress(),
        per_processor=[], tasks_per_hour=None, eta_seconds=None, eta_at=None, created_at=None, started_at=None,
        heartbeat_at=None, finished_at=None, wall_seconds=None, session_id=None, versions={}, command_line=None,
        error=None, checks=CheckSummary(), epoch=0, processes=[],
        commands={},
    )  # fmt: skip


def facts(**changes: Any) -> model.Facts:
    base: dict[str, Any] = dict(
        processors=[], running=[], interrupted=[], resumable=[], open_dates={}, checks=[], failures=[],
        attempt_errors={}, gaps={}, stale={}, expected={}, notes={},
    )  # fmt: skip
    base.update(changes)
    return model.Facts(**base)


def test_every_situation_is_a_named_row_and_hooks_have_rows() -> None:
    names = [s.name for s in situations.SITUATIONS]
    assert len(names) == len(set(names))
    assert {"interrupted", "failed", "gate", "never_built", "stale", "beyond_range", "running",
            "nothing_to_do", "quota_pause", "check_dates"} <= set(names)  # fmt: skip


def test_segments_select_exactly_the_wanted_dates() -> None:
    days = [f"2024-01-{d:02d}" for d in range(1, 11)]
    selected = {"a": set(days), "b": set(days)}
    wanted = {"a": set(days) - {"2024-01-03"}, "b": set(days)}  # a 01-03 is another action's
    found = wording.segments(wanted, selected, ["a", "b"])
    covered = {(name, day) for names, start, end, _ in found for name in names for day in days
               if start <= day <= end and day in selected[name]}  # fmt: skip
    assert covered == {(name, day) for name, chosen in wanted.items() for day in chosen}


def test_the_quota_pause_hook_resumes_after_the_time() -> None:
    paused = run(4, "interrupted", ["a"])
    [action] = [
        a for a in engine.decide(facts(paused=[(paused, "2026-01-07T18:00:00Z")])) if a.does == "work"
    ]
    assert action.command == "runbook resume 4 --detach" and "2026-01-07T18:00:00Z" in action.text
    assert action.situation == "quota_pause"


def test_the_per_date_check_hook_rebuilds_those_dates() -> None:
    found = engine.decide(facts(failed_check_dates={("a", "rows"): {"2024-01-02", "2024-01-05"}}))
    work = [a for a in found if a.does == "work"]
    assert [a.command for a in work] == [
        "runbook run a --no-resume --start 2024-01-02 --end 2024-01-02 --detach",
        "runbook run a --no-resume --start 2024-01-05 --end 2024-01-05 --detach",
    ]
    assert {a.situation for a in work} == {"check_dates"}


def test_work_comes_before_observation() -> None:
    found = engine.decide(
        facts(running=[run(1, "running", ["a"])], interrupted=[run(2, "interrupted", ["b"])])
    )
    assert [a.does for a in found] == sorted((a.does for a in found), key=["work", "observe", "note"].index)
    assert found[0].command == "runbook resume 2 --detach"
    assert all("-f" not in (a.command or "") for a in found)
