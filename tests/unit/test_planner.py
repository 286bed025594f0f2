"""The planner over a real SQLite state store: what is done, stale, a gap, or waits for upstreams."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbook.config import RunbookConfig, parse_config
from runbook.engine.calendar import Calendar
from runbook.engine.planner import Plan, build_plan
from runbook.engine.versions import resolve_versions
from runbook.errors import ConfigError, UsageError
from runbook.state.store import Store

D = dt.date
START, END = D(2024, 1, 1), D(2024, 1, 6)
VERSIONS = {"a": "v2", "b": "v1", "c": "v1"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def cfg(**extra: Any) -> RunbookConfig:
    processors = {
        "a": {"command": "x"},
        "b": {"command": "x", "needs": ["a"]},
        "c": {"command": "x", "needs": ["b"], "batch_days": 4},
    }
    return parse_config({"processors": processors, **extra}, "runbook.yaml")


def built(store: Store, processor: str, version: str, *days: int) -> None:
    """Record ``processor`` as built with ``version`` on 2024-01-DD for each day."""
    run = store.create_run(processors=[processor], start_date="2024-01-01", end_date="2024-01-31")
    store.add_tasks(
        run.id,  # type: ignore[arg-type]
        [
            {"processor": processor, "date": f"2024-01-{d:02d}", "end_date": f"2024-01-{d:02d}",
             "status": "succeeded", "code_version": version}
            for d in days
        ],
    )  # fmt: skip


def plan(store: Store, names: list[str], config: RunbookConfig | None = None, **options: Any) -> Plan:
    config = config or cfg()
    return build_plan(config, store, Calendar(config.calendar), names, START, END, VERSIONS, **options)


def reasons(result: Plan, processor: str) -> dict[int, str | None]:
    return {
        day.day: task.skip_reason
        for task in result.tasks
        if task.processor == processor
        for day in (task.date + dt.timedelta(days=n) for n in range((task.end_date - task.date).days + 1))
    }


def test_already_done_only_with_the_same_code_version(store: Store) -> None:
    built(store, "a", "v2", 1, 2)
    built(store, "a", "v1", 3)
    result = plan(store, ["a"])
    assert reasons(result, "a") == {1: "already_done", 2: "already_done", 3: None, 4: None, 5: None, 6: None}
    assert result.counts() == {"a": {"planned": 4, "already_done": 2}}
    assert all(r is None for r in reasons(plan(store, ["a"], resume=False), "a").values())


def test_only_gaps_and_only_stale(store: Store) -> None:
    built(store, "a", "v2", 1, 2)
    built(store, "a", "v1", 3, 4)
    gaps = reasons(plan(store, ["a"], only_gaps=True), "a")
    assert gaps == {1: "not_a_gap", 2: "not_a_gap", 3: "not_a_gap", 4: "not_a_gap", 5: None, 6: None}
    stale = reasons(plan(store, ["a"], only_stale=True), "a")
    assert stale == {1: "not_stale", 2: "not_stale", 3: None, 4: None, 5: "not_stale", 6: "not_stale"}
    both = reasons(plan(store, ["a"], only_gaps=True, only_stale=True), "a")
    assert [d for d, r in both.items() if r is None] == [3, 4, 5, 6]


def test_a_built_upstream_does_not_hold_back_gaps_and_stale_dates_downstream(store: Store) -> None:
    built(store, "a", "v2", 1, 2, 3, 4, 5, 6)
    built(store, "b", "v1", 1, 2, 3)
    built(store, "b", "v0", 4)
    gaps = plan(store, ["a", "b"], only_gaps=True)
    assert reasons(gaps, "b") == {
        1: "not_a_gap",
        2: "not_a_gap",
        3: "not_a_gap",
        4: "not_a_gap",
        5: None,
        6: None,
    }
    stale = plan(store, ["a", "b"], only_stale=True)
    assert [d for d, r in reasons(stale, "b").items() if r is None] == [4]


def test_upstream_skipped_and_missing(store: Store) -> None:
    config = parse_config(
        {
            "calendar": {"seasons": ["2024-01-01"], "off_days": ["2024-01-05"]},
            "processors": {
                "a": {"command": "x", "bootstrap_days": 2},
                "b": {"command": "x", "needs": ["a"]},
            },
        },
        "runbook.yaml",
    )
    both = plan(store, ["a", "b"], config)
    assert reasons(both, "a") == {1: "bootstrap", 2: "bootstrap", 3: None, 4: None, 5: "off_day", 6: None}
    assert reasons(both, "b") == {
        1: "upstream_skipped",
        2: "upstream_skipped",
        3: None,
        4: None,
        5: "off_day",
        6: None,
    }

    # b alone: its upstream is outside the run, so what a built decides.
    built(store, "a", "some-old-version", 3)
    alone = plan(store, ["b"], config)
    missing, skipped = "upstream_missing", "upstream_skipped"
    assert reasons(alone, "b") == {1: skipped, 2: skipped, 3: None, 4: missing, 5: "off_day", 6: missing}


def test_chunks_of_runnable_dates_and_sequence_by_date(store: Store) -> None:
    built(store, "a", "v2", 2)
    result = plan(store, [])
    chunks = [(t.date.day, t.end_date.day) for t in result.tasks if t.processor == "c" and t.runnable]
    assert chunks == [(1, 4), (5, 6)]
    assert result.counts()["c"] == {"planned": 2}
    # Dates first, then dependency order: a pipeline, not one processor after another.
    ordered = sorted(result.tasks, key=lambda t: t.seq)
    assert [(t.processor, t.date.day) for t in ordered[:4]] == [("a", 1), ("b", 1), ("c", 1), ("a", 2)]


def test_bad_requests(store: Store) -> None:
    with pytest.raises(UsageError, match="unknown processor 'zz'"):
        plan(store, ["zz"])
    with pytest.raises(UsageError, match="--end 2024-01-01 is before --start 2024-01-02"):
        build_plan(cfg(), store, Calendar(cfg().calendar), [], D(2024, 1, 2), D(2024, 1, 1), VERSIONS)


def test_versions_declared_by_command_or_hash(tmp_path: Path) -> None:
    config = parse_config(
        {
            "processors": {
                "a": {"command": "x", "version": "1.2"},
                "b": {"command": "x", "version": {"command": "echo built-$((40 + 2))"}},
                "c": {"command": "x"},
                "d": {"command": "x", "version": {"command": "exit 3"}},
            }
        },
        "f",
    )
    versions = resolve_versions(config, ["a", "b", "c"], str(tmp_path))
    assert versions == {"a": "1.2", "b": "built-42", "c": f"cfg-{config.processors['c'].definition_hash()}"}
    with pytest.raises(ConfigError, match="version command failed with exit code 3"):
        resolve_versions(config, ["d"], str(tmp_path))
