"""The heat map's model (which state a cell is in, spans, legend, order) and its SVG picture."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

from runbook.config import parse_config
from runbook.engine.calendar import Calendar
from runbook.reports.heatmap import COLORS, heatmap_svg
from runbook.runlog import RunLog, task_lines
from runbook.snapshots import to_data
from runbook.snapshots.coverage import DayState, ProcessorCoverage, TaskState
from runbook.snapshots.heatmap import cell_state, heat_map, heat_order, live_states

START, END = dt.date(2026, 1, 1), dt.date(2026, 1, 10)
CONFIG = parse_config(
    {
        "name": "heat",
        "calendar": {"off_days": ["2026-01-04"], "seasons": ["2026-01-01"]},
        "processors": {
            "late": {"phase": "4", "command": "true", "needs": ["mid"], "bootstrap_days": 2},
            "mid": {"phase": "3", "command": "true", "needs": ["base"]},
            "base": {"phase": "3", "command": "true"},
        },
    },
    "runbook.yaml",
)


def task(
    task_id: int, day: str, status: str, *, version: str | None = "v2", reason: str | None = None
) -> TaskState:
    return TaskState(task_id, 1, day, day, status, reason, version, 1, 0, 10, None)


def coverage(name: str, states: dict[str, DayState], version: str | None = "v2") -> ProcessorCoverage:
    calendar = Calendar(CONFIG.calendar)
    dates = [(d.isoformat(), why) for d, why in calendar.dates(START, END, CONFIG.bootstrap_days(name))]
    return ProcessorCoverage(name, START, END, version, dates, states)


def test_a_cell_is_the_first_state_that_applies() -> None:
    built = task(1, "2026-01-02", "succeeded")
    failed = task(2, "2026-01-02", "failed")
    assert cell_state(None, DayState(built, built, None), "v2") == "succeeded"
    assert cell_state(None, DayState(built, built, None), "v3") == "stale"
    assert cell_state(None, DayState(built, built, None), None) == "succeeded"  # version unknown: never stale
    assert cell_state(None, DayState(built, failed, None), "v2") == "failed"  # a newer attempt failed
    assert cell_state(None, DayState(None, task(3, "2026-01-02", "blocked"), None), "v2") == "blocked"
    assert cell_state(None, DayState(built, failed, None), "v2", "running") == "running"
    assert cell_state("off_day", None, "v2") == "off_day"
    assert cell_state(None, None, "v2") == "never_built"
    skipped = task(4, "2026-01-02", "skipped", reason="upstream_missing")
    assert cell_state(None, DayState(None, None, skipped), "v2") == "upstream_missing"
    chosen = task(5, "2026-01-02", "skipped", reason="already_done")  # a selection, not a reason
    assert cell_state(None, DayState(None, None, chosen), "v2") == "never_built"


def test_rows_come_by_phase_in_dependency_order_as_spans_with_counts_and_a_legend() -> None:
    assert heat_order(CONFIG) == ["base", "mid", "late"]
    base = {
        f"2026-01-0{n}": DayState(task(n, f"2026-01-0{n}", "succeeded"), None, None) for n in (1, 2, 3, 5)
    }
    base["2026-01-06"] = DayState(None, task(6, "2026-01-06", "failed"), None)
    old = task(7, "2026-01-07", "succeeded", version="v1")
    base["2026-01-07"] = DayState(old, old, None)
    mid = {"2026-01-06": DayState(None, task(8, "2026-01-06", "blocked"), None)}
    coverages = {"base": coverage("base", base), "mid": coverage("mid", mid), "late": coverage("late", {})}
    live = live_states([("mid", "2026-01-08", "2026-01-09", "running"), ("mid", "2026-01-09", "2026-01-09", "pending")], START, END)  # fmt: skip
    data = to_data(heat_map(CONFIG, coverages, START, END, live=live))
    assert [(row["processor"], row["phase"]) for row in data["rows"]] == [
        ("base", "3"),
        ("mid", "3"),
        ("late", "4"),
    ]
    spans = [(s["state"], s["start"], s["dates"]) for s in data["rows"][0]["spans"]]
    assert spans == [
        ("succeeded", "2026-01-01", 3), ("off_day", "2026-01-04", 1), ("succeeded", "2026-01-05", 1),
        ("failed", "2026-01-06", 1), ("stale", "2026-01-07", 1), ("never_built", "2026-01-08", 3),
    ]  # fmt: skip
    mid_states = {s["start"]: s["state"] for s in data["rows"][1]["spans"]}
    assert mid_states["2026-01-06"] == "blocked" and mid_states["2026-01-08"] == "running"
    assert data["rows"][2]["counts"] == {"never_built": 7, "off_day": 1, "bootstrap": 2}
    assert sum(sum(row["counts"].values()) for row in data["rows"]) == 3 * 10
    assert all(sum(s["dates"] for s in row["spans"]) == 10 for row in data["rows"])
    assert [(entry["state"], entry["dates"]) for entry in data["legend"]] == [
        ("succeeded", 4), ("stale", 1), ("running", 2), ("failed", 1), ("blocked", 1), ("never_built", 16),
        ("off_day", 3), ("bootstrap", 2),
    ]  # fmt: skip
    assert data["rows"][0]["built"] == 5 and data["rows"][0]["expected"] == 9


def test_the_svg_draws_every_span_in_its_colour_and_escapes_text() -> None:
    config = parse_config(
        {"name": "x", "processors": {"a_b": {"phase": "Phase <one>", "command": "true"}}}, "runbook.yaml"
    )
    states = {"2026-01-02": DayState(None, task(1, "2026-01-02", "failed"), None)}
    found = ProcessorCoverage("a_b", START, END, "v2", [(d.isoformat(), None) for d in _days()], states)
    data = to_data(heat_map(config, {"a_b": found}, START, END))
    svg = heatmap_svg(data, title="t & <u>", interactive=True)
    root = ET.fromstring(svg)  # well-formed: every name escaped
    ns = {"s": "http://www.w3.org/2000/svg"}
    rects = root.findall(".//s:g[@class='hm-row']//s:rect", ns)
    assert [(r.get("fill"), r.get("data-i"), r.get("data-n")) for r in rects] == [
        (COLORS["never_built"], "0", "1"), (COLORS["failed"], "1", "1"), (COLORS["never_built"], "2", "8"),
    ]  # fmt: skip
    assert root.find(".//s:g[@class='hm-row']", ns).get("data-processor") == "a_b"  # type: ignore[union-attr]
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "a_b" in texts and "Phase <one>" in texts and "t & <u>" in texts
    plain = heatmap_svg(data)
    assert (
        "data-i" not in plain and "hm-row" not in plain and "<title>a_b 2026-01-02: failed</title>" in plain
    )


def test_a_long_range_labels_fewer_months() -> None:
    config = parse_config({"name": "x", "processors": {"a": {"command": "true"}}}, "runbook.yaml")
    first, last = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
    days = [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    data = to_data(heat_map(config, {"a": ProcessorCoverage("a", first, last, None, [(d, None) for d in days], {})}, first, last))  # fmt: skip
    labels = [
        t.text
        for t in ET.fromstring(heatmap_svg(data, plot_width=600)).iter("{http://www.w3.org/2000/svg}text")
    ]
    months = [label for label in labels if label and label[:3] in ("Jan", "Apr", "Jul", "Oct", "Feb")]
    assert "Jan 2024" in months and "Apr 2024" in months and "Feb 2024" not in months


def test_task_lines_are_the_lines_of_one_processor_and_date(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "run.log")
    for attempt in (1, 2):
        tag = log.header("games", "2026-01-05", "2026-01-05", attempt)
        log.write(f"try {attempt}", tag)
        other = log.header("games", "2026-01-06", "2026-01-06", attempt)
        log.write("other date", other)
    chunk = log.header("games", "2026-01-07", "2026-01-09", 1)
    log.write("chunk", chunk)
    log.close()
    lines, omitted = task_lines(tmp_path / "run.log", "games", "2026-01-05", "2026-01-05", limit=3)
    assert omitted == 1 and [
        line.split(" ", 2)[-1] if line.startswith("==>") else line for line in lines
    ] == [
        "games 2026-01-05 #1 | try 1",
        "games 2026-01-05 attempt 2",
        "games 2026-01-05 #2 | try 2",
    ]
    assert task_lines(tmp_path / "run.log", "games", "2026-01-07", "2026-01-09", limit=10)[0][-1].endswith(
        "| chunk"
    )
    assert task_lines(tmp_path / "missing.log", "games", "2026-01-05", "2026-01-05", limit=3) == ([], 0)


def _days() -> list[dt.date]:
    return [START + dt.timedelta(days=n) for n in range((END - START).days + 1)]
