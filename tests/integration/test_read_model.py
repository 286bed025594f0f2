"""One read model: every surface describes a run, a check and a failure the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CONFIG = """\
name: contract
calendar: {start: 2026-02-01, end: 2026-02-08, off_days: [2026-02-04]}
processors:
  load:
    phase: "3"
    command: "sh -c 'test {{ date }} != 2026-02-06 || (echo cannot parse partition {{ date }}; exit 3)'"
  publish:
    phase: "4"
    command: "true"
    needs: [load]
"""


def test_status_show_history_and_the_handoff_describe_a_run_identically(
    make_workspace: Callable[..., Any],
) -> None:
    ws = make_workspace(CONFIG)
    assert ws.runbook("run").code == 1  # one date of load fails, its downstream is blocked
    status = ws.cli("status", "--json", check=True).json()
    history = ws.cli("history", "--json", check=True).json()
    show = ws.cli("show", "1", "--json", check=True).json()
    handoff = ws.cli("handoff", "--format", "json", check=True).json()
    (from_status,) = status["runs"]
    (from_history,) = history["runs"]
    (from_handoff,) = handoff["runs"]
    assert from_status == from_history == show["run"] == from_handoff
    assert {doc["schema_version"] for doc in (status, history, show, handoff)} == {2}

    assert from_status["progress"] == {
        "total": 16, "work": 14, "succeeded": 12, "failed": 1, "blocked": 1, "skipped": 2, "pending": 0,
        "running": 0, "cancelled": 0, "percent": 85.7,
    }  # fmt: skip
    assert (from_status["status"], from_status["alive"]) == ("failed", False)
    # The failure: grouped by its error line in show and in the handoff alike.
    (group,) = show["failures"]
    assert (group["processor"], group["error"], group["tasks"]) == (
        "load",
        "cannot parse partition 2026-02-06",
        1,
    )
    assert handoff["failures"]["groups"] == show["failures"]
    (blocked,) = show["blocked"]
    assert (blocked["processor"], blocked["reason"], blocked["tasks"]) == (
        "publish",
        "upstream load failed",
        1,
    )


def test_reading_commands_never_create_a_state_store(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(CONFIG)
    for args in (["status"], ["status", "--json"], ["history", "--json"], ["coverage", "load", "--json"],
                 ["handoff", "--format", "brief"], ["checks", "history"], ["plan"], ["resume"]):  # fmt: skip
        result = ws.cli(*args)
        assert result.code == 0, (args, result.stdout, result.stderr)
    for args in (["show", "3"], ["logs", "3"], ["stop", "3"], ["resume", "3"]):
        result = ws.cli(*args)
        assert (
            result.code == 2
            and result.stderr.strip() == "runbook: error: run 3 not found (see `runbook status`)"
        )
    assert not (ws.root / "state").exists()
