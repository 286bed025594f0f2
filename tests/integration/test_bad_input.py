"""Bad input through the real CLI: one line on stderr naming the file, key path and problem (or
the option), exit code 2, no traceback, and the state DB left exactly as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from core_helpers import query

from runbook.state.store import Store

GOOD = """
processors:
  a:
    command: [sh, -c, "echo a {{ date }}"]
  b:
    needs: [a]
    command: [sh, -c, "echo b {{ date }}"]
"""
WINDOW = ("--start", "2024-01-01", "--end", "2024-01-03")

# (case id, runbook.yaml or None for GOOD, command line, what the one line must say)
CASES = [
    (
        "unknown-key",
        "processors:\n  a:\n    comand: echo\n",
        ("run", *WINDOW),
        ["runbook.yaml", "processors.a.comand", "unknown key"],
    ),
    (
        "wrong-type",
        "processors:\n  a:\n    command: echo\n    retries: {attempts: lots}\n",
        ("run", *WINDOW),
        ["runbook.yaml", "processors.a.retries.attempts", "expected an integer", "'lots'"],
    ),
    (
        "cycle",
        "processors:\n  a: {command: echo, needs: [b]}\n  b: {command: echo, needs: [a]}\n",
        ("run", *WINDOW),
        ["runbook.yaml", "processors.a.needs", "cycle", "a -> b -> a"],
    ),
    (
        "unknown-upstream",
        "processors:\n  a: {command: echo, needs: [nope]}\n",
        ("run", *WINDOW),
        ["runbook.yaml", "processors.a.needs.0", "unknown upstream", "'nope'"],
    ),
    (
        "calendar-end-before-start",
        "calendar: {start: 2024-02-01, end: 2024-01-01}\nprocessors:\n  a: {command: echo}\n",
        ("run",),
        ["runbook.yaml", "calendar", "end 2024-01-01 is before start 2024-02-01"],
    ),
    (
        "template-error",
        'processors:\n  a: {command: "echo {{ date "}\n',
        ("run", *WINDOW),
        ["runbook.yaml", "processors.a.command", "template error"],
    ),
    (
        "unknown-pool",
        "processors:\n  a: {command: echo, pool: warehouse}\n",
        ("run", *WINDOW),
        ["runbook.yaml", "processors.a.pool", "unknown pool 'warehouse'"],
    ),
    (
        "invalid-yaml",
        "processors:\n  a: {command: echo\n  b: [\n",
        ("run", *WINDOW),
        ["runbook.yaml", "line", "invalid YAML"],
    ),
    (
        "cli-end-before-start",
        None,
        ("run", "--start", "2024-02-01", "--end", "2024-01-01"),
        ["--end 2024-01-01 is before --start 2024-02-01"],
    ),
    (
        "cli-bad-date",
        None,
        ("run", "--start", "2024-13-01", "--end", "2024-12-31"),
        ["--start", "2024-13-01", "runbook run --help"],
    ),
    (
        "cli-unknown-processor",
        None,
        ("run", "a", "nope", *WINDOW),
        ["unknown processor 'nope'", "known: a, b"],
    ),
    (
        "plan-unknown-processor",
        None,
        ("plan", "nope", *WINDOW),
        ["unknown processor 'nope'"],
    ),
]
COMMAND_LINE_CASES = [case for case in CASES if case[1] is None]


def state_files(ws: Any) -> dict[str, bytes]:
    folder = ws.db.parent
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def assert_one_line_error(result: Any, expected: list[str]) -> None:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert lines[0].startswith("runbook: error: ")
    for part in expected:
        assert part in lines[0], (part, lines[0])


@pytest.mark.parametrize(("case", "config", "args", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_leaves_an_existing_state_db_untouched(
    make_workspace: Any, case: str, config: str | None, args: tuple[str, ...], expected: list[str]
) -> None:
    ws = make_workspace(GOOD)
    store = Store.open(f"sqlite:///{ws.db}")
    store.create_run(processors=["a"], start_date="2024-01-01", end_date="2024-01-01")
    store.close()
    before = state_files(ws)
    assert "runbook.db" in before
    if config is not None:
        ws.write(config)

    assert_one_line_error(ws.runbook(*args), expected)
    assert state_files(ws) == before
    assert [r["id"] for r in query(ws.db, "SELECT id FROM run")] == [1]


@pytest.mark.parametrize(
    ("case", "config", "args", "expected"), COMMAND_LINE_CASES, ids=[c[0] for c in COMMAND_LINE_CASES]
)
def test_bad_command_line_creates_no_state_db(
    make_workspace: Any, case: str, config: str | None, args: tuple[str, ...], expected: list[str]
) -> None:
    ws = make_workspace(GOOD)
    assert_one_line_error(ws.runbook(*args), expected)
    assert not ws.db.parent.exists()


def test_config_error_names_the_config_file_given_with_option(make_workspace: Any, tmp_path: Path) -> None:
    ws = make_workspace(GOOD)
    elsewhere = tmp_path / "other.yaml"
    elsewhere.write_text("workers: many\nprocessors:\n  a: {command: echo}\n")
    result = ws.runbook("--config", str(elsewhere), "plan", *WINDOW)
    assert_one_line_error(result, [str(elsewhere), "workers", "'many'"])
    assert not ws.db.parent.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--bogus", "status"), "No such option '--bogus'"),
        (("nosuch",), "No such command 'nosuch'"),
        (("show",), "Missing argument 'RUN_ID'"),
        (("status", "--recent", "many"), "'many' is not a valid integer"),
    ],
)
def test_usage_errors_anywhere_are_one_line_and_exit_2(
    make_workspace: Any, args: tuple[str, ...], fragment: str
) -> None:
    ws = make_workspace("processors:\n  a:\n    command: 'true'\n")
    result = ws.runbook(*args)
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("runbook: error: ")
    assert fragment in result.stderr
    assert result.stdout == ""
