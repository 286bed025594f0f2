"""Work sessions and notes through the real CLI: numbering, notes, the handoff `session end` writes,
and work done outside any session showing up in the next handoff."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from core_helpers import query

from runbook.cli import sessions as cli_sessions
from runbook.kinds import NoteKind

CONFIG = """\
name: sessions
calendar:
  start: 2026-02-01
  end: 2026-02-05
processors:
  games:
    phase: "3"
    command: "true"
"""


def test_sessions_number_notes_and_write_their_handoff(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(CONFIG)
    assert ws.cli("session", "start", "--title", "Phase 3 backfill", check=True).stdout.startswith(
        "session 1 started: Phase 3 backfill"
    )
    again = ws.cli("session", "start")
    assert (
        again.code == 2
        and "session 1 is already open" in again.stderr
        and "runbook session end" in again.stderr
    )
    assert (
        "(session 1)"
        in ws.cli("note", "--kind", "fix", "usage_rate", "joins", "team", "stats", check=True).stdout
    )
    ws.cli("note", "player_stats is slow on Mondays", check=True)
    ws.runbook("run", "games", "--start", "2026-02-01", "--end", "2026-02-03", check=True)

    ended = ws.cli("session", "end", "--tz", "UTC", check=True).stdout.strip()
    match = re.fullmatch(r"session 1 ended; handoff: (handoffs/\d{4}-\d{2}-\d{2}-\d{4}-session-1\.md)", ended)
    assert match, ended
    report = (ws.root / match.group(1)).read_text(encoding="utf-8")
    assert report.startswith("# 🟡 Handoff — sessions — Session 1: Phase 3 backfill\n")
    assert ", ended " in report.splitlines()[4]
    assert "### 🔧 Fixes applied\n\n- usage_rate joins team stats" in report
    assert "### ⚠️ Known issues\n\n- player_stats is slow on Mondays" in report
    assert "| 1 | games | 2026-02-01..2026-02-03 | succeeded |" in report
    [row] = query(ws.db, "SELECT id, ended_at, handoff_path FROM work_session")
    assert row["ended_at"] is not None and row["handoff_path"] == match.group(1)

    none = ws.cli("session", "end")
    assert (
        none.code == 2
        and none.stderr.strip() == "runbook: error: no open session: start one with `runbook session start`"
    )

    # Work between sessions belongs to the next handoff.
    assert (
        "no open session"
        in ws.cli("note", "--kind", "next", "build", "2026-02-04", "onwards", check=True).stdout
    )
    ws.runbook("run", "games", "--start", "2026-02-04", "--end", "2026-02-04", check=True)
    assert ws.cli("session", "start", check=True).stdout.startswith("session 2 started\n")
    current = ws.cli("handoff", "--out", "-", check=True).stdout
    assert "— Session 2" in current.splitlines()[0]
    assert "- build 2026-02-04 onwards" in current and "usage_rate joins team stats" not in current
    assert "| 2 | games | 2026-02-04..2026-02-04 | succeeded |" in current
    assert "| 1 | games |" not in current

    first = ws.cli("handoff", "--session", "1", "--format", "json", check=True).json()
    assert first["session"]["id"] == 1 and not first["session"]["open"]
    assert [run["id"] for run in first["runs"]] == [1]
    assert [n["text"] for n in first["notes"]["fix"]] == ["usage_rate joins team stats"]
    assert first["notes"]["next"] == []

    data = ws.cli("session", "end", "--json", "--out", "handoffs/two.md", check=True).json()
    assert data["session"]["id"] == 2 and data["handoff"] == "handoffs/two.md"
    assert data["session"]["ended_at"].endswith("Z") and not data["session"]["open"]
    assert (ws.root / "handoffs" / "two.md").read_text(encoding="utf-8").startswith("# ")


def test_a_session_whose_handoff_cannot_be_written_stays_open(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(CONFIG)
    (ws.root / "templates").mkdir()
    (ws.root / "templates" / "handoff.md.j2").write_text("{{ nothing_like_this }}\n", encoding="utf-8")
    ws.cli("session", "start", check=True)
    result = ws.cli("session", "end")
    assert (
        result.code == 2
        and "handoff.md.j2: line 1" in result.stderr
        and "'nothing_like_this' is undefined" in result.stderr
    )
    assert query(ws.db, "SELECT ended_at FROM work_session") == [{"ended_at": None}]
    (ws.root / "templates" / "handoff.md.j2").unlink()
    assert ws.cli("session", "end", check=True).stdout.startswith("session 1 ended; handoff: handoffs/")


def test_bad_note_input_is_one_line(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(CONFIG)
    result = ws.runbook("note", "--kind", "lesson", "x")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1 and "'lesson'" in result.stderr
    result = ws.runbook("note", "  ")
    assert result.code == 2 and "a note needs text" in result.stderr


def test_note_kinds_agree() -> None:
    assert tuple(kind.value for kind in NoteKind) == cli_sessions.NOTE_KINDS
