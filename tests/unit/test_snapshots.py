"""The read model's shapes: one vocabulary, one rounding rule, one run object (docs/json.md)."""

from __future__ import annotations

import datetime as dt
import gc
import json
import threading
from collections import Counter

from runbook.formatting import percent
from runbook.snapshots import JSON_SCHEMA_VERSION, collector_paused, document, to_data
from runbook.snapshots.model import Progress
from runbook.snapshots.runs import date_ranges, error_summary, failure_groups, run_commands, run_snapshot
from runbook.state.records import Run, Task

NOW = dt.datetime(2026, 1, 7, 18, 0, tzinfo=dt.UTC)


def a_run(**fields: object) -> Run:
    values: dict[str, object] = {
        "id": 7, "status": "running", "processors": ["a", "b"], "start_date": "2026-01-01", "end_date": "2026-01-10",
        "versions": {"a": "v1", "b": "v2"}, "workers": 2, "pid": 4242, "host": "h1", "controller_id": "h1:4242",
        "log_path": "state/logs/run-7.log", "created_at": NOW - dt.timedelta(hours=1),
        "started_at": NOW - dt.timedelta(minutes=50), "heartbeat_at": NOW - dt.timedelta(seconds=3),
    }  # fmt: skip
    values.update(fields)
    return Run(**values)  # type: ignore[arg-type]


def test_progress_counts_work_without_skips_and_rounds_percent_down() -> None:
    progress = Progress.of(Counter({"succeeded": 2, "failed": 1, "skipped": 4, "pending": 3}))
    assert (progress.total, progress.work, progress.succeeded, progress.remaining) == (10, 6, 2, 3)
    assert progress.percent == 33.3
    assert percent(9996, 10000) == 99.9 and percent(2, 3) == 66.6 and percent(1, 0) is None
    assert Progress.of(Counter()).percent is None


def test_one_run_object_with_owner_liveness_rate_eta_and_per_processor_progress() -> None:
    outcomes = {
        ("a", "succeeded", None): 4, ("a", "skipped", "off_day"): 1, ("b", "succeeded", None): 1,
        ("b", "running", None): 1, ("b", "pending", None): 2, ("b", "skipped", "bootstrap"): 2,
    }  # fmt: skip
    snapshot = run_snapshot(
        a_run(), outcomes, (5, 1800.0), [("b", "rows", False), ("a", "dups", True)], NOW, True
    )
    data = to_data(snapshot)
    assert (data["status"], data["alive"], data["owner"]) == ("running", True, {"host": "h1", "pid": 4242})
    assert data["progress"] == {
        "total": 11, "work": 8, "succeeded": 5, "failed": 0, "blocked": 0, "skipped": 3, "pending": 2,
        "running": 1, "cancelled": 0, "percent": 62.5,
    }  # fmt: skip
    assert data["tasks_per_hour"] == 10.0 and data["eta_seconds"] == 1080  # 3 left at 10 an hour
    assert data["eta_at"] == "2026-01-07T18:18:00Z" and data["wall_seconds"] == 3000.0
    assert [
        (p["name"], p["version"], p["progress"]["work"], p["skipped"]) for p in data["per_processor"]
    ] == [
        ("a", "v1", 4, {"off_day": 1}),
        ("b", "v2", 4, {"bootstrap": 2}),
    ]
    assert data["checks"] == {"passed": 1, "failed": 1, "failing": ["b.rows"]}
    assert data["commands"]["stop"] == "runbook stop 7" and "resume" not in data["commands"]
    assert json.loads(json.dumps(data)) == data


def test_an_active_run_whose_controller_is_gone_is_interrupted_and_a_queued_one_is_unknown() -> None:
    gone = to_data(run_snapshot(a_run(), {}, (0, 0.0), [], NOW, False))
    assert (gone["status"], gone["stored_status"], gone["alive"]) == ("interrupted", "running", False)
    assert gone["commands"]["resume"] == "runbook resume 7" and gone["eta_seconds"] is None
    queued = to_data(
        run_snapshot(a_run(status="queued", pid=None, controller_id=None), {}, (0, 0.0), [], NOW, None)
    )
    assert (queued["status"], queued["alive"]) == ("queued", None)


def test_commands_follow_the_status() -> None:
    assert set(run_commands(3, "succeeded")) == {"show", "logs"}
    assert set(run_commands(3, "failed")) == {"show", "logs", "resume"}
    assert set(run_commands(3, "queued")) == {"show", "logs", "watch", "follow", "stop"}


def test_ranges_follow_the_sequence_so_skipped_dates_do_not_split_them() -> None:
    sequence = ["2026-01-01", "2026-01-02", "2026-01-05", "2026-01-06", "2026-01-07"]
    found = date_ranges(sequence, {"2026-01-02", "2026-01-05", "2026-01-07"})
    assert [tuple(r) for r in found] == [("2026-01-02", "2026-01-05", 2), ("2026-01-07", "2026-01-07", 1)]
    assert date_ranges(sequence, set()) == []


def test_the_error_summary_is_the_line_that_says_what_went_wrong() -> None:
    assert (
        error_summary("Traceback (most recent call last):\n  File x\nValueError: bad row\n")
        == "ValueError: bad row"
    )
    assert error_summary("loading 2024-01-01\nconnection refused\nexit code 1") == "connection refused"
    assert error_summary("exit code 2") == "exit code 2"
    assert error_summary(None) == "(no error output)"


def test_failures_are_grouped_by_processor_and_error() -> None:
    def failed(task_id: int, day: str, error: str, processor: str = "a") -> Task:
        return Task(id=task_id, run_id=1, processor=processor, date=day, end_date=day, status="failed", attempt=3,
                    exit_code=1, error_tail=f"{error}\nexit code 1")  # fmt: skip

    sequence = {"a": ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"], "b": ["2026-01-01"]}
    groups = failure_groups(
        [failed(1, "2026-01-01", "quota"), failed(2, "2026-01-02", "quota"), failed(3, "2026-01-04", "quota"),
         failed(4, "2026-01-03", "bad row"), failed(5, "2026-01-01", "quota", "b")],
        sequence,
    )  # fmt: skip
    shapes = [(g.processor, g.error, g.tasks, [tuple(r) for r in g.ranges]) for g in groups]
    assert shapes == [
        ("a", "quota", 3, [("2026-01-01", "2026-01-02", 2), ("2026-01-04", "2026-01-04", 1)]),
        ("b", "quota", 1, [("2026-01-01", "2026-01-01", 1)]),
        ("a", "bad row", 1, [("2026-01-03", "2026-01-03", 1)]),
    ]
    assert groups[0].error_tail == "quota\nexit code 1" and groups[0].attempts == 3


def test_every_document_carries_the_schema_version() -> None:
    doc = document(run_id=3, started=NOW)
    assert doc == {"schema_version": JSON_SCHEMA_VERSION, "run_id": 3, "started": "2026-01-07T18:00:00Z"}
    assert JSON_SCHEMA_VERSION == 2


def test_the_collector_resumes_when_the_last_pause_ends_and_only_if_it_ran_before() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    try:
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():  # nested
                assert not gc.isenabled()
            assert not gc.isenabled()
            thread.start()
            assert inside.wait(10)
        assert not gc.isenabled()  # the other thread still builds
        leave.set()
        thread.join(10)
        assert gc.isenabled()
        gc.disable()
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        leave.set()
        gc.enable()


def test_to_data_of_plain_lists_and_dicts_keeps_their_values() -> None:
    from runbook.kinds import TaskStatus

    value = {TaskStatus.FAILED: [1, "a", None, {"k": (2, dt.date(2026, 1, 2))}], 3: [TaskStatus.SKIPPED]}
    assert to_data(value) == {"failed": [1, "a", None, {"k": [2, "2026-01-02"]}], "3": ["skipped"]}
    assert type(to_data(value)["3"][0]) is str
