"""Handoff reports rendered from fixed states of a real SQLite state store.

The golden tests build each state through the Store API with fixed timestamps, hosts and PIDs,
render it with a fixed "now" and time zone, and compare bytes with tests/golden/. Regenerate the
golden files after an intended change with ``pytest tests/integration/test_handoff.py --update-golden``.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from markdown_it import MarkdownIt

from runbook.reports import Scope, build_context, report_text, resolve_scope
from runbook.state.connect import Json
from runbook.state.store import Store
from runbook.workspace import Workspace

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TZ = ZoneInfo("America/Los_Angeles")
T0 = dt.datetime(2026, 1, 7, 17, 0, tzinfo=dt.UTC)  # 09:00 PST
HOST = "backfill-01"

CONFIG = """\
name: nba-golden
calendar:
  start: 2026-01-01
  end: 2026-01-10
  off_days: [2026-01-04]
processors:
  game_summary:
    phase: "3"
    description: Team and player box scores per game.
    command: "true"
    version: v2
  player_stats:
    phase: "3"
    command: "true"
    version: v2
    needs: [game_summary]
    checks:
      - name: usage_rate_coverage
        description: usage_rate populated on rows of players who played.
        query: |
          SELECT ROUND(100 * SAFE_DIVIDE(COUNTIF(usage_rate IS NOT NULL), COUNT(*)), 1) AS pct_populated
          FROM `nba.analytics.player_game_summary`
          WHERE game_date BETWEEN @start AND @end AND minutes > 0
        expect: ["pct_populated >= 45"]
  composite_factors:
    phase: "4"
    command: "true"
    version: v1
    needs: [player_stats]
"""
DAYS = [f"2026-01-{day:02d}" for day in range(1, 11) if day != 4]  # the 9 expected dates


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


class State:
    """A workspace on disk with a fresh store, and helpers that write rows with fixed times."""

    def __init__(self, root: Path, config: str = CONFIG) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "runbook.yaml").write_text(config, encoding="utf-8")
        self.workspace = Workspace.load(str(root / "runbook.yaml"))
        self.store = Store.open(self.workspace.database_url)

    def session(self, title: str, started: float, ended: float | None = None) -> int:
        return self.store.db.insert(
            "INSERT INTO work_session (title, started_at, ended_at) VALUES (:title, :started, :ended) RETURNING id",
            {"title": title, "started": at(started), "ended": None if ended is None else at(ended)},
        )

    def run(
        self,
        processors: list[str],
        tasks: Iterable[tuple[str, str, str, dict[str, Any]]],
        *,
        status: str,
        created: float,
        finished: float | None = None,
        heartbeat: float | None = None,
        pid: int | None = None,
        session_id: int | None = None,
        workers: int = 2,
        error: str | None = None,
        command_line: str | None = None,
        versions: dict[str, str] | None = None,
    ) -> int:
        """A run with tasks (processor, date, status, extra columns); started one minute after it was created."""
        rows = list(tasks)
        dates = sorted(date for _, date, _, _ in rows)
        run = self.store.create_run(
            processors=processors, start_date=dates[0], end_date=dates[-1], status=status, workers=workers,
            session_id=session_id, versions=versions or {p: "v2" for p in processors},
            command_line=command_line or f"runbook run {' '.join(processors)} --start {dates[0]} --end {dates[-1]} --detach",
        )  # fmt: skip
        assert run.id is not None
        self.store.update_run(
            run.id, created_at=at(created), started_at=at(created + 1), finished_at=None if finished is None else at(finished),
            heartbeat_at=at(heartbeat if heartbeat is not None else finished if finished is not None else created + 1),
            pid=pid, host=HOST, controller_id=f"{HOST}:{pid}" if pid else None, log_path=f"state/logs/run-{run.id}.log",
            error=error,
        )  # fmt: skip
        batch = []
        for seq, (processor, date, task_status, extra) in enumerate(rows):
            row = {
                "processor": processor, "date": date, "end_date": date, "seq": seq, "status": task_status,
                "attempt": 0, "skip_reason": None, "code_version": None, "exit_code": None, "error_tail": None,
                "rows_affected": None, "started_at": None, "finished_at": None, "duration_seconds": None,
            }  # fmt: skip
            if task_status in ("succeeded", "failed", "running"):
                begin = at(created + 2 + 3 * seq)
                row.update(attempt=1, code_version=(versions or {}).get(processor, "v2"), started_at=begin)
                if task_status != "running":
                    row.update(finished_at=begin + dt.timedelta(minutes=2), duration_seconds=120.0)
                    row.update(exit_code=0 if task_status == "succeeded" else 1)
            row.update(extra)
            batch.append(row)
        self.store.add_tasks(run.id, batch)
        return run.id

    def events(self, *events: tuple[float, str, int | None, str]) -> None:
        for minutes, kind, run_id, message in events:
            self.store.db.execute(
                "INSERT INTO event (run_id, at, kind, message, data) VALUES (:run, :at, :kind, :message, :data)",
                {"run": run_id, "at": at(minutes), "kind": kind, "message": message, "data": Json({})},
            )

    def note(self, kind: str, text: str, minutes: float, session_id: int | None) -> None:
        self.store.add_note(session_id, kind, text, at(minutes))

    def check(self, run_id: int, passed: bool, value: float, minutes: float) -> None:
        self.store.add_check_result(
            run_id=run_id, processor="player_stats", check_name="usage_rate_coverage", severity="block",
            passed=passed, start_date=DAYS[0], end_date=DAYS[-1], metrics={"pct_populated": value},
            conditions=[{"expr": "pct_populated >= 45", "left": value, "op": ">=", "right": 45, "passed": passed}],
            query=self.workspace.config.processors["player_stats"].checks[0].query,
            params={"start": DAYS[0], "end": DAYS[-1]}, at=at(minutes),
        )  # fmt: skip

    def context(self, now: float, *, alive: Iterable[int] = (), scope: Scope | None = None) -> dict[str, Any]:
        alive_ids = set(alive)
        return build_context(
            self.workspace, self.store, now=at(now), timezone="America/Los_Angeles", scope=scope,
            alive=lambda run: run.id in alive_ids,
        )  # fmt: skip

    def render(
        self, now: float, *, format: str = "markdown", alive: Iterable[int] = (), scope: Scope | None = None
    ) -> str:
        context = self.context(now, alive=alive, scope=scope)
        return report_text(context, format=format, templates_dir=self.workspace.templates_dir, tz=TZ)


def built(
    processor: str, days: Iterable[str] = DAYS, rows: int = 120
) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(processor, day, "succeeded", {"rows_affected": rows}) for day in days]


def off_day(processor: str) -> tuple[str, str, str, dict[str, Any]]:
    return (processor, "2026-01-04", "skipped", {"skip_reason": "off_day"})


def assert_golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.exists(), f"{path} is missing: run pytest with --update-golden to create it"
    expected = path.read_bytes().decode("utf-8")
    assert text == expected, (
        f"{name} differs from the golden file (pytest --update-golden updates it after review)"
    )


# -- the fixed states ---------------------------------------------------------------------------


def running_state(root: Path) -> State:
    """Session 3 is open: Phase 3 was built in run 1, composite_factors runs now in run 2 (alive)."""
    state = State(root)
    state.session("Phase 3 backfill", -600, -420)
    state.session("Phase 3 checks", -400, -300)
    session = state.session("Phase 4 backfill", -10)
    first = state.run(
        ["game_summary", "player_stats"], [*built("game_summary"), *built("player_stats", rows=2400), off_day("game_summary"), off_day("player_stats")],
        status="succeeded", created=0, finished=60, session_id=session, workers=4,
    )  # fmt: skip
    state.check(first, True, 48.2, 61)
    tasks = built("composite_factors", DAYS[:3], rows=600)
    tasks += [("composite_factors", DAYS[3], "running", {})] + [
        ("composite_factors", d, "pending", {}) for d in DAYS[4:]
    ]
    second = state.run(["composite_factors"], tasks, status="running", created=70, heartbeat=89, pid=48213, session_id=session, workers=1, versions={"composite_factors": "v1"})  # fmt: skip
    state.events(
        (-10, "session_started", None, "session 3 started: Phase 4 backfill"),
        (0, "run_created", first, "runbook run game_summary player_stats --detach"),
        (1, "run_started", first, "controller backfill-01:4100 took the run"),
        (60, "run_succeeded", first, "18 succeeded, 2 skipped"),
        (70, "run_created", second, "runbook run composite_factors --detach"),
        (71, "run_started", second, "controller backfill-01:48213 took the run"),
    )
    state.note(
        "decision",
        "Run composite_factors sequentially: the warehouse pool is shared with the scrapers.",
        65,
        session,
    )
    return state


def interrupted_state(root: Path) -> State:
    """No session open: run 1 (outside any session) was interrupted by a reboot; its PID is dead."""
    state = State(root)
    state.session("Setup", -600, -500)
    tasks = built("game_summary", DAYS[:5]) + [("game_summary", d, "pending", {}) for d in DAYS[5:]]
    tasks += built("player_stats", DAYS[:4], rows=2400) + [
        ("player_stats", d, "pending", {}) for d in DAYS[4:]
    ]
    run = state.run(
        ["game_summary", "player_stats"], tasks, status="interrupted", created=0, finished=40, pid=39117,
        error="received SIGTERM", workers=2,
    )  # fmt: skip
    state.events(
        (0, "run_created", run, "runbook run game_summary player_stats --detach"),
        (1, "run_started", run, "controller backfill-01:39117 took the run"),
        (
            40,
            "run_interrupted",
            run,
            "run 1 interrupted (received SIGTERM): 2 in-flight task(s) returned to pending",
        ),
    )
    state.note("issue", "The host rebooted at 09:40 for a kernel update.", 45, None)
    return state


def blocked_state(root: Path) -> State:
    """Session 1: run 1 is blocked: usage_rate_coverage failed, composite_factors waits; one date failed."""
    state = State(root)
    session = state.session("Validate Phase 3", -5)
    tasks = built("game_summary", DAYS[:-1]) + [
        ("game_summary", DAYS[-1], "failed", {"attempt": 3, "error_tail": "Traceback (most recent call last):\n  File \"merge.py\", line 12\nRuntimeError: quota exceeded for table game_summary"}),
    ]  # fmt: skip
    tasks += built("player_stats", DAYS[:-1], rows=2400) + [
        ("player_stats", DAYS[-1], "blocked", {"error_tail": "upstream game_summary 2026-01-10 failed"})
    ]
    reason = "blocked by gate: usage_rate_coverage: pct_populated >= 45 (42.9 >= 45)"
    tasks += [("composite_factors", d, "blocked", {"error_tail": reason}) for d in DAYS]
    run = state.run(["game_summary", "player_stats", "composite_factors"], tasks, status="blocked", created=0, finished=50, session_id=session, workers=2)  # fmt: skip
    state.check(run, False, 42.9, 48)
    state.events(
        (0, "run_created", run, "runbook run --start 2026-01-01 --end 2026-01-10"),
        (1, "run_started", run, "controller backfill-01:5120 took the run"),
        (
            30,
            "task_failed",
            run,
            "game_summary 2026-01-10 failed after 3 attempt(s): RuntimeError: quota exceeded for table game_summary",
        ),
        (
            48,
            "gate_blocked",
            run,
            "blocking check failed on player_stats: usage_rate_coverage: pct_populated >= 45 (42.9 >= 45)",
        ),
        (50, "run_blocked", run, "17 succeeded, 1 failed, 10 blocked"),
    )
    return state


def finished_state(root: Path) -> tuple[State, Scope]:
    """Session 2 ended with every processor complete and notes of every kind; one run between sessions."""
    state = State(root)
    state.session("Phase 3", -900, -800)
    outside = state.run(["game_summary"], [*built("game_summary"), off_day("game_summary")], status="succeeded", created=-700, finished=-680)  # fmt: skip
    session = state.session("Phase 3 and 4 complete", -10, 180)
    first = state.run(["player_stats"], [*built("player_stats", rows=2400), off_day("player_stats")], status="succeeded", created=0, finished=40, session_id=session)  # fmt: skip
    state.check(first, True, 47.3, 41)
    second = state.run(["composite_factors"], built("composite_factors", rows=600), status="succeeded", created=60, finished=120, session_id=session, workers=4, versions={"composite_factors": "v1"})  # fmt: skip
    state.events(
        (-700, "run_created", outside, "runbook run game_summary"),
        (-680, "run_succeeded", outside, "9 succeeded, 1 skipped"),
        (-10, "session_started", None, "session 2 started: Phase 3 and 4 complete"),
        (0, "run_created", first, "runbook run player_stats"),
        (40, "run_succeeded", first, "9 succeeded, 1 skipped"),
        (60, "run_created", second, "runbook run composite_factors --workers 4"),
        (120, "run_succeeded", second, "9 succeeded"),
    )
    state.note("fix", "usage_rate now joins team_offense_game_summary on game_id and team_abbr.", 20, session)
    state.note("fix", "Fixed the scraped_at -> created_at schema mismatch in feature_extractor.", 25, session)
    state.note(
        "issue",
        "usage_rate coverage is ~47 % on all rows: DNP rows have no usage. This is normal.",
        50,
        session,
    )
    state.note("decision", "Lowered the usage_rate_coverage threshold from 95 to 45 %.", 55, session)
    state.note("next", "Start Phase 5 predictions for 2026-01-01..2026-01-10.", 170, session)
    ended = state.store.get_session(session)
    assert ended is not None
    return state, Scope(ended, state.store.previous_session_end(before_id=session), at(180))


# -- golden files -------------------------------------------------------------------------------


def test_golden_running(tmp_path: Path, update_golden: bool) -> None:
    state = running_state(tmp_path)
    assert_golden("handoff-running.md", state.render(90, alive=[2]), update_golden)
    assert_golden("handoff-running-brief.md", state.render(90, format="brief", alive=[2]), update_golden)


def test_golden_interrupted(tmp_path: Path, update_golden: bool) -> None:
    assert_golden("handoff-interrupted.md", interrupted_state(tmp_path).render(60), update_golden)


def test_golden_blocked(tmp_path: Path, update_golden: bool) -> None:
    state = blocked_state(tmp_path)
    assert_golden("handoff-blocked.md", state.render(55), update_golden)
    assert_golden("handoff-blocked.json", state.render(55, format="json"), update_golden)
    assert_golden("handoff-blocked-brief.md", state.render(55, format="brief"), update_golden)


def test_golden_finished_session(tmp_path: Path, update_golden: bool) -> None:
    state, scope = finished_state(tmp_path)
    assert_golden("handoff-finished.md", state.render(200, scope=scope), update_golden)


@pytest.mark.postgres
def test_the_same_report_from_a_postgresql_store(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", pg_url)
    state = blocked_state(tmp_path)
    assert state.store.db.dialect == "postgresql"
    report = state.render(55)
    golden = (GOLDEN / "handoff-blocked.md").read_text(encoding="utf-8")
    database = "- **Workspace:** `runbook.yaml`, state `sqlite:///state/runbook.db`"
    assert database in golden
    assert report.replace(report.splitlines()[5], database) == golden
    state.store.close()


def test_same_state_renders_the_same_bytes(tmp_path: Path) -> None:
    one, two = running_state(tmp_path / "one"), running_state(tmp_path / "two")
    assert one.render(90, alive=[2]) == two.render(90, alive=[2]) == one.render(90, alive=[2])


# -- escaping and redaction ---------------------------------------------------------------------

HOSTILE = "bad | value\n```\n<script>alert('x')</script>\n| col | col |\n|---|---|\n`tick` \\| end & &amp; <b>bold</b>"


def hostile_state(root: Path, config: str = CONFIG) -> State:
    """Every free-text field of the store holds pipes, newlines, backticks and HTML."""
    state = State(root, config)
    session = state.session(HOSTILE, -5)
    tasks = built("game_summary", DAYS[:-1]) + [
        ("game_summary", DAYS[-1], "failed", {"attempt": 2, "error_tail": HOSTILE})
    ]
    failed = state.run(
        ["game_summary"], tasks, status="failed", created=0, finished=30, session_id=session, error=HOSTILE
    )
    state.run(
        ["player_stats"],
        built("player_stats", DAYS[:2]),
        status="interrupted",
        created=31,
        finished=35,
        pid=7,
        error=HOSTILE,
    )
    tasks = built("composite_factors", DAYS[:1]) + [("composite_factors", d, "pending", {}) for d in DAYS[1:]]
    state.run(
        ["composite_factors"],
        tasks,
        status="running",
        created=40,
        pid=8,
        session_id=session,
        command_line=f"runbook run {HOSTILE}",
    )
    state.store.add_check_result(
            run_id=failed, processor="player_stats", check_name=HOSTILE, severity="warn", passed=False,
            start_date=DAYS[0], end_date=DAYS[-1], conditions=[{"expr": HOSTILE, "left": HOSTILE, "op": ">=", "right": 1, "passed": False}],
            query=f"SELECT 1 -- {HOSTILE}\nWHERE d = @start", params={"start": HOSTILE}, error=HOSTILE, at=at(31),
    )  # fmt: skip
    state.events((10, "task_failed", failed, HOSTILE), (12, "note", None, HOSTILE))
    state.note("issue", HOSTILE, 20, session)
    state.note("next", HOSTILE, 21, session)
    return state


def _cells(line: str) -> int:
    """Cells of a Markdown table row: pipes not escaped with a backslash, minus the outer two."""
    count, escaped = 0, False
    for char in line:
        if char == "|" and not escaped:
            count += 1
        escaped = char == "\\" and not escaped
    return count - 1


def test_hostile_values_cannot_break_tables_fences_or_inject_html(tmp_path: Path) -> None:
    report = hostile_state(tmp_path).render(60, alive=[3])
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(report)
    in_fences = {line for t in tokens if t.type == "fence" and t.map for line in range(*t.map)}
    lines = [line if index not in in_fences else "" for index, line in enumerate(report.splitlines())]
    tables = 0
    for index, line in enumerate(lines):
        if line.startswith("|") and index + 1 < len(lines) and lines[index + 1].startswith("|---"):
            tables += 1
            width = _cells(line)
            row = index + 1
            while row < len(lines) and lines[row].startswith("|"):
                assert _cells(lines[row]) == width, (
                    f"table row {row + 1} has the wrong number of cells: {lines[row]}"
                )
                row += 1
            assert row == len(lines) or not lines[row].strip(), (
                f"a table ends in the middle of a cell at line {row + 1}"
            )
    assert tables >= 6
    assert len([t for t in tokens if t.type == "table_open"]) == tables
    inline_html = {
        child.content for token in tokens for child in (token.children or []) if child.type == "html_inline"
    }
    assert inline_html <= {"<br>"}, inline_html
    assert not [t for t in tokens if t.type == "html_block"]
    fences = [t.content for t in tokens if t.type == "fence" and t.info == "text"]
    assert any("<script>alert('x')</script>" in content and "```" in content for content in fences)
    html = md.render(report)
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;" in html


SECRET = "s3cr3t-Router-Value-9f"
PASSWORD = "pa55w0rd-db-Z"
TOKEN = "tok-8c1f0e2d4b"


def test_secrets_never_appear_in_any_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_SECRET", SECRET)
    config = CONFIG.replace(
        "    description: Team and player box scores per game.\n",
        '    description: Team and player box scores per game.\n    env:\n      API_KEY: "${ROUTER_SECRET}"\n',
    )
    state = State(tmp_path, config)
    session = state.session("secrets", -5)
    leak = f"connect postgresql://bob:{PASSWORD}@db.internal/warehouse with {SECRET}; Authorization: Bearer {TOKEN}"
    tasks = built("game_summary", DAYS[:-1]) + [("game_summary", DAYS[-1], "failed", {"error_tail": leak})]
    run = state.run(
        ["game_summary"], tasks, status="failed", created=0, finished=30, session_id=session, error=leak,
        command_line=f"runbook run game_summary --token={TOKEN} --db postgresql://bob:{PASSWORD}@db.internal/w",
    )  # fmt: skip
    state.store.add_check_result(
            run_id=run, processor="player_stats", check_name="c", severity="block", passed=False, start_date=DAYS[0],
            end_date=DAYS[-1], query="SELECT 1 WHERE key = @key", params={"key": SECRET}, error=leak, at=at(31),
    )  # fmt: skip
    state.events((10, "task_failed", run, leak))
    state.note("fix", f"rotated the key, the old one was {SECRET}", 20, session)
    for format in ("markdown", "json", "brief"):
        text = state.render(40, format=format)
        for secret in (SECRET, PASSWORD, TOKEN):
            assert secret not in text, f"{format} shows a secret"
        assert "***" in text


def test_a_failing_version_command_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    config = CONFIG.replace("    version: v1\n", "    version:\n      command: echo broken >&2; exit 3\n")
    state = State(tmp_path, config)
    state.run(
        ["composite_factors"], built("composite_factors", rows=5), status="succeeded", created=0, finished=9
    )
    data = state.context(20)
    [warning] = data["warnings"]
    assert warning.startswith("code version of composite_factors unknown, its stale dates are not counted:")
    [entry] = [p for phase in data["phases"] for p in phase["processors"] if p["name"] == "composite_factors"]
    assert (entry["version"], entry["built"], entry["stale"], entry["status"]) == (None, 9, 0, "complete")
    assert "⚠️ code version of composite_factors unknown" in state.render(20)


# -- templates ----------------------------------------------------------------------------------


def test_a_workspace_template_extends_the_built_in_one(tmp_path: Path) -> None:
    state, scope = finished_state(tmp_path)
    templates = state.workspace.templates_dir
    templates.mkdir()
    (templates / "handoff.md.j2").write_text(
        textwrap.dedent(
            """\
            {% extends "builtin/handoff.md.j2" %}
            {% block notes %}
            ## Lessons learned ({{ notes.fix|length }} fixes)
            {{ super() }}
            {% endblock %}
            {% block footer %}
            *Team Falcon, on call: see the wiki.*
            {% endblock %}
            """
        ),
        encoding="utf-8",
    )
    report = state.render(200, scope=scope)
    assert "## Lessons learned (2 fixes)" in report
    assert "### 🔧 Fixes applied" in report  # super() kept the built-in notes
    assert "## 📊 Status by phase" in report  # the other blocks are the built-in ones
    assert report.rstrip().endswith("*Team Falcon, on call: see the wiki.*")
    assert "Written by runbook" not in report


def test_template_mistakes_are_one_line_errors(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(CONFIG)
    (ws.root / "templates").mkdir()
    (ws.root / "templates" / "typo.md.j2").write_text(
        "# {{ workspace.name }}\n\n{{ sesion.id }}\n", encoding="utf-8"
    )
    (ws.root / "templates" / "broken.md.j2").write_text("{% if %}\n", encoding="utf-8")
    result = ws.cli("handoff", "--template", "typo.md.j2", "--out", "-")
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "typo.md.j2: line 3" in result.stderr and "'sesion' is undefined" in result.stderr
    result = ws.cli("handoff", "--template", "broken.md.j2")
    assert result.code == 2 and "broken.md.j2: line 1: template syntax error" in result.stderr
    result = ws.cli("handoff", "--template", "nope.md.j2")
    assert result.code == 2 and "template 'nope.md.j2' not found" in result.stderr
    result = ws.cli("handoff", "--format", "json", "--template", "typo.md.j2")
    assert result.code == 2 and "--template applies to" in result.stderr
    result = ws.cli("handoff", "--tz", "Mars/Olympus_Mons")
    assert result.code == 2 and "unknown time zone 'Mars/Olympus_Mons'" in result.stderr


def test_brief_is_at_most_40_lines(tmp_path: Path) -> None:
    names = [f"table_{n:02d}" for n in range(45)]
    config = "name: wide\ncalendar: {start: 2026-01-01, end: 2026-01-10}\nprocessors:\n" + "".join(
        f'  {name}:\n    phase: "{n % 9}"\n    command: "true"\n' for n, name in enumerate(names)
    )
    state = State(tmp_path, config)
    run = state.run(
        names,
        [(name, DAYS[0], "failed", {"error_tail": "boom"}) for name in names],
        status="failed",
        created=0,
        finished=9,
    )
    for name in names:
        state.store.add_check_result(
            run_id=run, processor=name, check_name="rows", severity="block", passed=False,
                        start_date=DAYS[0], end_date=DAYS[0], error="no rows", at=at(10),
        )  # fmt: skip
    brief = state.render(20, format="brief")
    lines = brief.splitlines()
    assert len(lines) == 40
    assert lines[0].startswith("# wide")
    # The middle is cut, with a pointer to the full report; what to do next is never cut.
    [note] = [line for line in lines if line.startswith("… ")]
    assert "runbook handoff" in note
    assert lines.index(note) < lines.index("Next:")
    assert lines[lines.index("Next:") + 1].startswith("1. Fix first: ")
    assert "`runbook resume 1 --detach`" in lines[lines.index("Next:") + 1]


# -- the real CLI -------------------------------------------------------------------------------


def test_cli_handoff_writes_markdown_and_prints_json_and_brief(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(CONFIG)
    ws.runbook("run", "game_summary", "--start", "2026-01-01", "--end", "2026-01-03", check=True)
    result = ws.cli("handoff", "--tz", "Europe/Paris", check=True)
    written = result.stdout.strip().removeprefix("handoff written: ")
    assert written.startswith("handoffs/") and written.endswith(".md") and "session" not in written
    report = (ws.root / written).read_text(encoding="utf-8")
    assert "(Europe/Paris)" in report and " CET" in report
    assert "| game_summary | 3 / 9 | 33.3% |" in report
    data = ws.cli("handoff", "--format", "json", check=True).json()
    assert data["schema_version"] == 2 and data["overall"]["status"] == "incomplete"
    entry = data["phases"][0]["processors"][0]
    assert (entry["name"], entry["built"], entry["expected"], entry["gaps"]) == ("game_summary", 3, 9, 6)
    assert entry["gap_ranges"] == [{"start": "2026-01-05", "end": "2026-01-10", "dates": 6}]
    assert (
        data["next_actions"][0]["command"]
        == "runbook run game_summary player_stats composite_factors --only-gaps --start 2026-01-01 --end 2026-01-10 --detach"
    )
    brief = ws.cli("handoff", "--format", "brief", check=True).stdout
    assert brief.startswith("# nba-golden, ") and len(brief.splitlines()) <= 40


def test_a_markdown_handoff_links_the_heat_map_written_beside_it(make_workspace: Callable[..., Any]) -> None:
    import xml.etree.ElementTree as ET

    from runbook.reports.heatmap import COLORS

    ws = make_workspace(CONFIG)
    ws.runbook("run", "game_summary", "--start", "2026-01-01", "--end", "2026-01-03", check=True)
    written = ws.cli("handoff", check=True).stdout.strip().removeprefix("handoff written: ")
    report = ws.root / written
    picture = report.with_name(report.stem + "-heatmap.svg")
    link = f"![Heat map: every processor by date, 2026-01-01..2026-01-10](<{picture.name}>)"
    assert link in report.read_text(encoding="utf-8")
    root = ET.fromstring(picture.read_text(encoding="utf-8"))
    fills = [rect.get("fill") for rect in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert fills.count(COLORS["succeeded"]) == 2  # game_summary 01-01..03, and the legend
    assert COLORS["off_day"] in fills and COLORS["never_built"] in fills
    texts = [text.text for text in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"game_summary", "player_stats", "composite_factors", "3/9", "Phase 3", "Phase 4"} <= set(texts)
    assert texts[0] == "nba-golden: every processor by date"

    elsewhere = ws.cli("handoff", "--out", "notes/today.md", check=True)
    assert elsewhere.stdout.strip() == "handoff written: notes/today.md"
    assert "(<today-heatmap.svg>)" in (ws.root / "notes" / "today.md").read_text(encoding="utf-8")
    assert (ws.root / "notes" / "today-heatmap.svg").read_bytes() == picture.read_bytes()
    printed = ws.cli("handoff", "--out", "-", check=True).stdout
    assert "heatmap.svg" not in printed and "## 📊 Status by phase" in printed  # no file, no link
    assert len(list((ws.root / "handoffs").iterdir())) == 2


def test_live_run_shows_its_pid_alive_then_interrupted_with_the_resume_command(
    make_workspace: Callable[..., Any],
) -> None:
    ws = make_workspace(
        CONFIG.replace(
            'command: "true"\n    version: v2\n  player_stats',
            'command: "sleep 2"\n    version: v2\n  player_stats',
            1,
        )
    )
    started = ws.runbook(
        "run",
        "game_summary",
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-03",
        "--workers",
        "1",
        "--detach",
        "--json",
        check=True,
    ).json()
    deadline = time.monotonic() + 30
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = ws.cli("handoff", "--format", "json", check=True).json()
        if data["running"] and data["running"][0]["status"] == "running":
            break
        time.sleep(0.2)
    run = data["running"][0]
    assert (run["id"], run["owner"]["pid"], run["alive"]) == (started["run_id"], started["pid"], True)
    assert data["overall"]["status"] == "running"
    assert run["commands"]["follow"] == f"runbook logs {run['id']} -f"
    ws.runbook("stop", str(run["id"]), check=True)
    while time.monotonic() < deadline:
        data = ws.cli("handoff", "--format", "json", check=True).json()
        if data["interrupted"]:
            break
        time.sleep(0.2)
    assert data["overall"]["status"] == "interrupted" and not data["running"]
    assert data["interrupted"][0]["commands"]["resume"] == f"runbook resume {run['id']}"
    report = ws.cli("handoff", "--out", "-", check=True).stdout
    assert f"runbook resume {run['id']}" in report and "## ⏸️ Interrupted runs" in report


def test_scope_is_the_open_session_or_the_work_since_the_last_one(tmp_path: Path) -> None:
    state = running_state(tmp_path)
    scope = resolve_scope(state.store, at(90))
    assert scope.session is not None and scope.session.id == 3
    assert scope.since == at(-300) and scope.until == at(90)
    with pytest.raises(Exception, match="session 9 not found"):
        resolve_scope(state.store, at(90), 9)
    data = state.context(90, alive=[2])
    assert json.loads(json.dumps(data)) == data  # plain JSON data only
    assert [run["id"] for run in data["runs"]] == [1, 2]


def test_a_queued_run_counts_as_running(tmp_path: Path) -> None:
    state = State(tmp_path)
    tasks = [("game_summary", d, "pending", {}) for d in DAYS]
    run = state.run(["game_summary"], tasks, status="queued", created=0, pid=4242)
    data = state.context(5, alive=[run])
    assert [(r["id"], r["status"]) for r in data["running"]] == [(run, "queued")]
    assert data["overall"]["status"] == "running"
    report = state.render(5, alive=[run])
    assert f"runbook logs {run} --tail 50" in report and "-f`" not in report
    assert state.context(5)["interrupted"][0]["id"] == run  # its PID is gone: interrupted


def test_dates_per_hour_counts_dates_not_tasks(make_workspace: Callable[..., Any]) -> None:
    """Chunks of 3 dates over 7 dates: 3 tasks (3 + 3 + 1 dates) build 7 dates."""
    ws = make_workspace(
        """
        calendar: {start: 2026-01-01, end: 2026-01-07}
        processors:
          chunked:
            command: [sh, -c, "sleep 0.2"]
            batch_days: 3
        """
    )
    ws.runbook("run", check=True)
    [entry] = ws.cli("handoff", "--format", "json", check=True).json()["performance"]
    assert entry["processor"] == "chunked" and entry["dates"] == 7
    per_task = 3 / (entry["wall_seconds"] / 3600)  # what counting tasks would give
    assert entry["dates_per_hour"] > 2 * per_task


BURST = """\
name: burst
calendar: {start: 2026-02-01, end: 2026-02-08}
processors:
  load:
    command: "sh -c 'test {{ date }} = 2026-02-08 || (echo broken {{ date }}; exit 3)'"
  publish:
    command: "true"
    needs: [load]
"""


def test_the_timeline_folds_a_burst_of_failures_into_one_row(make_workspace: Callable[..., Any]) -> None:
    ws = make_workspace(BURST)
    assert ws.runbook("run").code == 1
    report = ws.cli("handoff", "--out", "-", check=True).stdout
    timeline = report.split("## 🕒 Timeline", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in timeline.splitlines() if line.startswith("| 2")]
    kinds = [row.split(" | ")[1] for row in rows]
    assert kinds == ["run_created", "run_started", "task_failed ×7", "run_failed"], rows
    assert "| load | the newest of 7, 2026-02-0" in rows[2] and "failed after 1 attempt(s)" in rows[2], rows
    # The JSON keeps every event.
    events = ws.cli("handoff", "--format", "json", check=True).json()["timeline"]["events"]
    assert [e["kind"] for e in events].count("task_failed") == 7
