"""The terminal rendering of a run's events (``runbook show``)."""

from __future__ import annotations

from typing import Any

from runbook.cli.output import event_lines


def event(
    n: int, kind: str, message: str, processor: str | None = None, date: str | None = None
) -> dict[str, Any]:
    return {"at": f"2026-03-01T10:00:{n:02d}Z", "kind": kind, "processor": processor, "date": date,
            "message": message}  # fmt: skip


def test_a_burst_of_one_kind_is_one_line_and_the_runs_own_events_stay_in_view() -> None:
    events = [event(0, "run_created", "runbook run"), event(1, "run_started", "controller took the run")]
    events += [
        event(2 + i, "check_passed", f"check load.rows_per_date (block) passed: window {i}", "load")
        for i in range(40)
    ]
    events += [
        event(42, "task_retry", "load 2026-03-02 attempt 1 failed", "load", "2026-03-02"),
        event(43, "task_retry", "load 2026-03-03 attempt 1 failed", "load", "2026-03-03"),
        event(44, "run_succeeded", "40 succeeded"),
    ]
    lines = event_lines(events, columns=200)
    assert lines == [
        "  10:00:00 run_created      runbook run",
        "  10:00:01 run_started      controller took the run",
        "  10:00:41 check_passed ×40 load: check rows_per_date (block) passed: window 39",
        "  10:00:42 task_retry       load 2026-03-02: attempt 1 failed",
        "  10:00:43 task_retry       load 2026-03-03: attempt 1 failed",
        "  10:00:44 run_succeeded    40 succeeded",
    ]


def test_only_the_newest_lines_are_kept_and_none_is_wider_than_the_terminal() -> None:
    events = [event(i % 60, "note" if i % 2 else "task_failed", "x" * 120, f"p{i % 2}") for i in range(50)]
    lines = event_lines(events, columns=80, limit=30)
    assert len(lines) == 30 and all(len(line) <= 80 for line in lines)
    assert lines[-1].startswith("  10:00:49 note ")  # the newest event is the last line


def run(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 7, "status": "running", "start_date": "2024-10-22", "end_date": "2025-12-28",
        "processors": ["team_offense_game_summary", "team_defense_game_summary", "player_game_summary"],
        "progress": {"succeeded": 300, "work": 742, "skipped": 1856, "failed": 0, "blocked": 0, "running": 2},
        "owner": {"pid": 4242, "host": None}, "alive": True, "tasks_per_hour": 12345.0, "eta_seconds": 3600,
        "heartbeat_at": None, "finished_at": None, "log_path": "state/logs/run-7.log",
    }  # fmt: skip
    return base | fields


def test_a_narrow_terminal_keeps_pid_rate_and_eta_whole_and_leaves_out_the_rest() -> None:
    from runbook.cli.output import run_lines

    narrow = run_lines(run(), 80)
    assert len(narrow) == 2 and all(len(line) <= 80 for line in narrow), narrow
    assert narrow[1].endswith("· PID 4242 alive · 12,345 tasks/h · ETA 1h00m"), narrow
    assert "…" not in narrow[1] and "log" not in narrow[1]  # nothing cut: left out whole
    middle = run_lines(run(), 100)[1]
    assert "· 3 processors · PID 4242 alive" in middle and len(middle) <= 100
    wide = run_lines(run(), 200)[1]
    assert wide.endswith(" · log state/logs/run-7.log") and "team_offense_game_summary, " in wide, wide
    ended = run_lines(
        run(status="succeeded", alive=False, eta_seconds=None, finished_at="2026-11-30T12:00:00Z"), 80
    )
    assert ended[1].startswith("    2024-10-22..2025-12-28 · 3 processors · 12,345 tasks/h · ended "), ended


def test_the_plan_fits_80_columns_with_long_processor_names() -> None:
    from runbook.cli.output import plan_text

    names = ["team_offense_game_summary", "upcoming_player_game_context", "ml_feature_store_v2"]
    plan = {
        "start": "2024-10-22", "end": "2025-12-28", "processors": names, "dates": [],
        "versions": {name: "cfg-99dcec10c3" for name in names},
        "counts": {name: {"planned": 12, "already_done": 133, "bootstrap": 28, "off_day": 1300} for name in names},
    }  # fmt: skip
    lines = plan_text(plan, dates=False, columns=80)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[1].split() == ["PROCESSOR", "VERSION", "TO", "RUN", "already_done", "bootstrap", "off_day"]
    assert lines[3].startswith("upcoming_player_game_cont…") and lines[3].split()[-4:] == [
        "12",
        "133",
        "28",
        "1,300",
    ]
    assert plan_text(plan, dates=False, columns=200)[3].startswith("upcoming_player_game_context ")


def test_tasks_left_running_by_a_stopped_run_are_in_flight_not_running() -> None:
    from runbook.cli.output import run_lines

    assert run_lines(run(), 80)[0].endswith("300/742 built (1,856 skipped), 2 running")
    stopped = run_lines(run(status="interrupted", alive=False, eta_seconds=None), 80)
    assert stopped[0].endswith("300/742 built (1,856 skipped), 2 in flight"), stopped
    assert "PID 4242 gone" in stopped[1]


def test_the_dashboard_says_in_flight_for_a_stopped_run_too() -> None:
    import datetime as dt

    from runbook.serve.pages import environment

    macros = environment(dt.UTC).get_template("_macros.html.j2").module
    progress = {"succeeded": 31, "work": 60, "percent": 51.6, "failed": 0, "blocked": 0, "running": 2}
    assert str(macros.progress_text(progress, "running")).endswith(", 2 running")  # type: ignore[attr-defined]
    assert str(macros.progress_text(progress, "interrupted")).endswith(", 2 in flight")  # type: ignore[attr-defined]


def test_bursts_fold_three_or_more_in_a_row_and_keep_what_they_stand_for() -> None:
    from runbook.formatting import bursts

    events = [event(0, "task_failed", "a", "load"), event(1, "task_failed", "b", "load")]
    events += [event(2, "task_failed", "c", "publish")] * 3 + [event(5, "run_failed", "done")]
    rows = bursts(events)
    assert [(r["kind"], r["processor"], r["count"]) for r in rows] == [
        ("task_failed", "load", 1), ("task_failed", "load", 1), ("task_failed", "publish", 3), ("run_failed", None, 1)
    ]  # fmt: skip
    assert rows[2]["folded"] == events[2:5] and rows[0]["folded"] == []
    assert bursts(events, least=2)[0]["count"] == 2


def test_versions_wrap_onto_lines_that_fit_instead_of_being_cut() -> None:
    from runbook.cli.output import packed

    items = [f"processor_{n}=cfg-{n:010d}" for n in range(5)]  # 26 characters each
    lines = packed("versions: ", items, 80)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0] == f"versions: {items[0]}, {items[1]},"
    assert lines[1] == f"          {items[2]}, {items[3]},"
    assert lines[2] == f"          {items[4]}"
    assert packed("versions: ", items, 200) == ["versions: " + ", ".join(items)]
