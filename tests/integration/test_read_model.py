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
    assert ws.cli("history").stdout.startswith("no runs yet: start one with `runbook run")
    assert ws.cli("history", "--status", "failed").stdout.strip() == "no runs match"
    for args in (["show", "3"], ["logs", "3"], ["stop", "3"], ["resume", "3"]):
        result = ws.cli(*args)
        assert (
            result.code == 2
            and result.stderr.strip() == "runbook: error: run 3 not found (see `runbook status`)"
        )
    assert not (ws.root / "state").exists()


WIDE = """\
name: wide
calendar: {start: 2026-03-01, end: 2026-03-20}
processors:
""" + "".join(
    f"  {name}: {{command: 'true'{', needs: [team_offense_game_summary]' if i else ''}}}\n"
    for i, name in enumerate(
        ["team_offense_game_summary", "team_defense_game_summary", "player_game_summary",
         "upcoming_player_game_context", "player_composite_factors", "ml_feature_store_v2"]
    )
)  # fmt: skip


def test_at_80_columns_a_run_takes_two_lines_and_nothing_is_wider(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(WIDE)
    ws.runbook("run", check=True)
    ws.runbook("run", "player_game_summary", "--no-resume", check=True)
    status = ws.cli("status", env={"COLUMNS": "80"}, check=True).stdout.splitlines()
    assert status[0].startswith("RUN") and len(status) == 1 + 2 * 2, status
    assert all(len(line) <= 80 for line in status), status
    first, second = status[3], status[4]  # run 1, the oldest, is listed last
    assert first.split()[:2] == ["1", "succeeded"] and "120/120 built" in first
    assert "2026-03-01..2026-03-20 · 6 processors · " in second and "tasks/h" in second
    history = ws.cli("history", env={"COLUMNS": "80"}, check=True).stdout.splitlines()
    assert len(history) == 5 and all(len(line) <= 80 for line in history)
    show = ws.cli("show", "1", env={"COLUMNS": "80"}, check=True).stdout.splitlines()
    assert all(len(line) <= 80 for line in show), [line for line in show if len(line) > 80]
    assert any(line.startswith("ml_feature_store_v2") for line in show)
    wide = ws.cli("status", env={"COLUMNS": "260"}, check=True).stdout.splitlines()
    assert len(wide) == 5 and "ml_feature_store_v2" in wide[4]  # room for every name
