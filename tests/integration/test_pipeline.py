"""A real pipeline through the real CLI: planning over a calendar, pipelined execution by date,
chunks (and dates downstream of chunks), depends_on_past, a shared pool, retries with backoff and timeouts that end process groups.

Expectations are computed here from the dates themselves, never with runbook's calendar; the
order of execution is judged from the times the controller recorded in the SQLite state DB.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from core_helpers import days, executions, group_alive, process_alive, run_row, tasks, when

START, END = dt.date(2024, 3, 1), dt.date(2024, 4, 29)  # 60 dates
OFF_DAYS = {dt.date(2024, 3, 13), dt.date(2024, 4, 2), dt.date(2024, 4, 17)}
SUNDAY = 6
SEASONS = [dt.date(2024, 2, 28), dt.date(2024, 4, 1)]
BOOTSTRAP = {"a": 4, "b": 2, "c": 0, "d": 4, "e": 4}
NEEDS = {"a": [], "b": ["a"], "c": ["a", "b"], "d": ["a"], "e": ["d"]}

PIPELINE = """
workers: 2
calendar:
  off_weekdays: [sun]
  off_days: [2024-03-13, 2024-04-02, 2024-04-17]
  seasons: [2024-02-28, 2024-04-01]
  bootstrap_days: 4
pools:
  serial: 1
processors:
  a:
    command: [sh, -c, "echo {{ processor }} {{ start }} >> runs.txt; sleep 0.05"]
  b:
    needs: [a]
    bootstrap_days: 2
    pool: serial
    command: [sh, -c, "echo {{ processor }} {{ start }} >> runs.txt; sleep 0.05"]
  c:
    needs: [a, b]
    bootstrap_days: 0
    command: [sh, -c, "echo {{ processor }} {{ start }} >> runs.txt; sleep 0.05"]
  d:
    needs: [a]
    batch_days: 7
    depends_on_past: true
    pool: serial
    command:
      - sh
      - -c
      - |
        echo {{ processor }} {{ start }} >> runs.txt
        echo {{ start }} {{ end }} $RUNBOOK_START $RUNBOOK_END >> chunks.txt
        sleep 0.05
  e:
    needs: [d]  # each date waits for the chunk of d that covers it (chunks span off-days)
    command: [sh, -c, "echo {{ processor }} {{ start }} >> runs.txt"]
"""


def own_reason(processor: str, day: dt.date) -> str | None:
    if day in OFF_DAYS or day.weekday() == SUNDAY:
        return "off_day"
    season = max((s for s in SEASONS if s <= day), default=None)
    if season is not None and (day - season).days < BOOTSTRAP[processor]:
        return "bootstrap"
    return None


def reason(processor: str, day: dt.date) -> str | None:
    """Why ``processor`` skips ``day`` (its own calendar first, then its upstreams), None to run it."""
    own = own_reason(processor, day)
    if own is not None:
        return own
    if any(reason(up, day) is not None for up in NEEDS[processor]):
        return "upstream_skipped"
    return None


def all_days() -> list[dt.date]:
    return [START + dt.timedelta(days=n) for n in range((END - START).days + 1)]


def expected_counts() -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for processor in NEEDS:
        reasons = Counter(reason(processor, day) for day in all_days())
        runnable = reasons.pop(None)
        planned = math.ceil(runnable / 7) if processor == "d" else runnable
        found[processor] = {"planned": planned, **reasons}
    return found


def test_expectations_cover_every_reason() -> None:
    """The scenario has off-days (list and weekday), bootstrap (default and override), upstream skips."""
    counts = expected_counts()
    assert len(all_days()) == 60
    assert counts["a"]["off_day"] == 9 + 3 and counts["a"]["bootstrap"] == 5
    assert counts["b"] == {
        "planned": counts["a"]["planned"],
        "off_day": 12,
        "bootstrap": 1,
        "upstream_skipped": 4,
    }
    assert counts["c"] == {"planned": counts["a"]["planned"], "off_day": 12, "upstream_skipped": 5}
    assert counts["d"]["planned"] == math.ceil(counts["a"]["planned"] / 7)


def covering(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(processor, date) -> the runnable task that covers the date."""
    found = {}
    for row in rows:
        if row["status"] != "skipped":
            for day in days(row["date"], row["end_date"]):
                found[(row["processor"], day)] = row
    return found


def assert_no_overlap(rows: list[dict[str, Any]]) -> None:
    spans = sorted((when(r["started_at"]), when(r["finished_at"]), r["processor"], r["date"]) for r in rows)
    for before, after in zip(spans, spans[1:], strict=False):
        assert after[0] >= before[1], f"{after[2]} {after[3]} started while {before[2]} {before[3]} ran"


def max_concurrency(rows: list[dict[str, Any]]) -> int:
    edges = sorted(
        [(when(r["started_at"]), 1) for r in rows] + [(when(r["finished_at"]), -1) for r in rows]
    )  # at equal times the end (-1) sorts first
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_pipeline_plans_and_runs_in_dependency_order(make_workspace: Any) -> None:
    ws = make_workspace(PIPELINE)
    window = ("--start", START.isoformat(), "--end", END.isoformat())
    expected = expected_counts()

    plan = ws.cli("plan", *window, "--json", check=True).json()
    assert plan["counts"] == expected
    for processor in NEEDS:
        # Every date once: a skipped date on its own, a runnable one in exactly one task (a chunk
        # of d spans the off-days between its 7 runnable dates).
        entries = [e for e in plan["dates"] if e["processor"] == processor]
        listed = {day: e for e in entries for day in days(e["date"], e["end_date"])}
        assert set(listed) == {d.isoformat() for d in all_days()}
        for day in all_days():
            entry = listed[day.isoformat()]
            if reason(processor, day) is None:
                assert (entry["action"], entry["reason"]) == ("run", None)
            elif entry["action"] == "skip":
                assert entry["date"] == entry["end_date"] == day.isoformat()
                assert entry["reason"] == reason(processor, day)
            else:
                assert processor == "d" and entry["date"] < day.isoformat() < entry["end_date"]
        assert sum(e["action"] == "run" for e in entries) == expected[processor]["planned"]
    assert not ws.db.exists() or not tasks(ws.db), "plan records nothing"

    result = ws.runbook("run", *window, "--workers", "3")
    assert result.code == 0, result.stdout + result.stderr
    rows = tasks(ws.db)
    run_id = rows[0]["run_id"]
    assert run_row(ws.db, run_id)["status"] == "succeeded"

    # The recorded plan: skipped dates by reason, runnable tasks all succeeded, once each.
    for processor, counts in expected.items():
        mine = [r for r in rows if r["processor"] == processor]
        skipped = Counter(r["skip_reason"] for r in mine if r["status"] == "skipped")
        assert {"planned": sum(r["status"] != "skipped" for r in mine), **skipped} == counts
        assert {r["status"] for r in mine} <= {"succeeded", "skipped"}
        for row in mine:
            if row["status"] == "succeeded":
                assert row["attempt"] == 1 and row["exit_code"] == 0
    ran = executions(ws.root / "runs.txt")
    assert set(ran.values()) == {1}
    assert sorted(ran) == sorted((r["processor"], r["date"]) for r in rows if r["status"] == "succeeded")

    # Chunks of 7 runnable dates of d, with start and end handed to the step.
    chunk_rows = sorted(
        (r for r in rows if r["processor"] == "d" and r["status"] != "skipped"), key=lambda r: r["date"]
    )
    runnable_d = [d.isoformat() for d in all_days() if reason("d", d) is None]
    for index, row in enumerate(chunk_rows):
        batch = runnable_d[index * 7 : index * 7 + 7]
        assert (row["date"], row["end_date"]) == (batch[0], batch[-1])
    lines = (ws.root / "chunks.txt").read_text().split("\n")
    assert sorted(line.split() for line in lines if line) == sorted(
        [r["date"], r["end_date"], r["date"], r["end_date"]] for r in chunk_rows
    )

    # No downstream date started before every upstream task covering it had succeeded.
    cover = covering(rows)
    checked = 0
    for row in rows:
        if row["status"] != "succeeded":
            continue
        for up in NEEDS[row["processor"]]:
            for day in days(row["date"], row["end_date"]):
                if reason(row["processor"], dt.date.fromisoformat(day)) is not None:
                    continue  # an off-day inside a chunk of d
                upstream = cover[(up, day)]
                assert upstream["status"] == "succeeded"
                assert when(row["started_at"]) >= when(upstream["finished_at"]), (row, upstream)
                checked += 1
    assert checked > 100
    # depends_on_past: each chunk of d waited for the previous one.
    for before, after in zip(chunk_rows, chunk_rows[1:], strict=False):
        assert when(after["started_at"]) >= when(before["finished_at"])
    # The pool of one slot: no step of b overlapped a step of d (nor another of b).
    assert_no_overlap([r for r in rows if r["processor"] in ("b", "d") and r["status"] == "succeeded"])
    # --workers 3 bounds parallelism, and it was used.
    done = [r for r in rows if r["status"] == "succeeded"]
    assert 2 <= max_concurrency(done) <= 3
    # Pipelined by date: c started early dates long before a finished its last one.
    first_c = min(when(r["started_at"]) for r in done if r["processor"] == "c")
    last_a = max(when(r["finished_at"]) for r in done if r["processor"] == "a")
    assert first_c < last_a

    # A second run over the same range finds everything already done.
    again = ws.cli("plan", *window, "--json", check=True).json()
    assert again["counts"]["a"] == {
        "already_done": expected["a"]["planned"],
        "planned": 0,
        "off_day": 12,
        "bootstrap": 5,
    }


RETRY_AND_TIMEOUT = """
processors:
  flaky:
    retries: {attempts: 2, delay: 0.2}
    command:
      - sh
      - -c
      - |
        date +%s.%N >> tries-{{ date }}
        if [ ! -e ok-{{ date }} ]; then
          touch ok-{{ date }}; echo "first attempt of {{ date }} fails"; exit 3
        fi
        echo "second attempt of {{ date }} works"
  slow:
    timeout: 1
    command: [sh, -c, "echo $$ > pid-{{ date }}; sleep 30 & echo $! > child-{{ date }}; wait"]
"""


def test_retry_with_backoff_and_timeout_that_ends_the_process_group(make_workspace: Any) -> None:
    ws = make_workspace(RETRY_AND_TIMEOUT)
    result = ws.runbook("run", "--start", "2024-01-01", "--end", "2024-01-02", "--workers", "4")
    assert result.code == 1, result.stdout + result.stderr  # a timed-out date fails the run
    rows = {(r["processor"], r["date"]): r for r in tasks(ws.db)}
    run_id = next(iter(rows.values()))["run_id"]
    assert run_row(ws.db, run_id)["status"] == "failed"

    for day in ("2024-01-01", "2024-01-02"):
        flaky = rows[("flaky", day)]
        assert (flaky["status"], flaky["attempt"], flaky["max_attempts"]) == ("succeeded", 2, 3)
        tries = [float(x) for x in (ws.root / f"tries-{day}").read_text().split()]
        assert len(tries) == 2
        assert tries[1] - tries[0] >= 0.2, "the retry waited for its delay"

        slow = rows[("slow", day)]
        assert slow["status"] == "failed" and slow["attempt"] == 1
        assert "timed out after 1s" in slow["error_tail"]
        assert 1.0 <= when(slow["finished_at"]).timestamp() - when(slow["started_at"]).timestamp() < 10
        shell = int((ws.root / f"pid-{day}").read_text())
        child = int((ws.root / f"child-{day}").read_text())
        assert slow["pid"] == shell, "the step's PID is recorded"
        assert not group_alive(shell) and not process_alive(child), "the whole process group ended"

    show = ws.cli("show", str(run_id), "--json", check=True).json()
    (group,) = show["failures"]  # the same error on both dates: one group
    assert (group["processor"], group["tasks"], group["ranges"]) == (
        "slow",
        2,
        [{"start": "2024-01-01", "end": "2024-01-02", "dates": 2}],
    )
    assert group["error"].startswith("step timed out after 1s") and "timed out" in group["error_tail"]
    retries = [e for e in show["events"] if e["kind"] == "task_retry"]
    assert len(retries) == 2 and all("retry in 0.2s" in e["message"] for e in retries)

    log = ws.runbook("logs", str(run_id), check=True).stdout.splitlines()
    for attempt in (1, 2):
        assert any(
            line.startswith("==> ") and line.endswith(f"flaky 2024-01-01 attempt {attempt}") for line in log
        ), log
    assert "flaky 2024-01-01 #1 | first attempt of 2024-01-01 fails" in log
    assert "flaky 2024-01-01 #2 | second attempt of 2024-01-01 works" in log


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Any:
    yield
    from core_helpers import stop_leftovers

    stop_leftovers(tmp_path)
