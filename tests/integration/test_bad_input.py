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
        "impossible-off-day",
        "calendar:\n  off_days: [2024-01-02, 2024-02-30]\nprocessors:\n  a: {command: echo}\n",
        ("run", *WINDOW),
        ["runbook.yaml", "calendar.off_days.1", "not a valid date", "'2024-02-30'"],
    ),
    (
        "undefined-template-name",
        'processors:\n  a: {command: "echo {{ undefined_name }}"}\n',
        ("run", *WINDOW),
        ["runbook.yaml", "processors.a.command", "unknown variable 'undefined_name'", "known: attempt, date"],
    ),
    (
        "undefined-template-name-in-list",
        'processors:\n  a:\n    command: [sh, -c, "echo {{ dat }}"]\n',
        ("plan", *WINDOW),
        ["runbook.yaml", "processors.a.command.2", "unknown variable 'dat'"],
    ),
    (
        "zero-timeout",
        "processors:\n  a: {command: echo, timeout: 0s}\n",
        ("run", *WINDOW),
        [
            "runbook.yaml",
            "processors.a.timeout",
            "must be more than 0 seconds",
            "'0s'",
            "leave it out for no limit",
        ],
    ),
    (
        "processor-defined-twice",
        "processors:\n  a: {command: echo one}\n  b: {command: echo}\n  a: {command: echo two}\n",
        ("run", *WINDOW),
        ["runbook.yaml", "line 4", "key 'a' is given twice"],
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


@pytest.mark.parametrize(
    "args",
    [("show", "7"), ("show", "7", "--json"), ("stop", "7"), ("resume", "7"), ("resume", "7", "--dry-run"),
     ("logs", "7"), ("logs", "7", "-f")],
    ids=lambda args: " ".join(args),
)  # fmt: skip
def test_an_unknown_run_in_a_fresh_workspace_creates_no_state_db(
    make_workspace: Any, args: tuple[str, ...]
) -> None:
    ws = make_workspace(GOOD)
    assert_one_line_error(ws.runbook(*args), ["run 7 not found", "runbook status"])
    assert not ws.db.parent.exists()


def test_commands_that_only_read_create_no_state_db(make_workspace: Any) -> None:
    ws = make_workspace(
        GOOD.replace("processors:", "calendar: {start: 2024-01-01, end: 2024-01-03}\nprocessors:")
    )
    for args in (("status",), ("status", "--json"), ("history",), ("coverage", "a"), ("plan",),
                 ("resume", "--dry-run"), ("handoff", "--format", "brief"), ("handoff", "--format", "json"),
                 ("checks", "history")):  # fmt: skip
        result = ws.runbook(*args)
        assert result.code == 0, (args, result.stderr)
        assert not ws.db.parent.exists(), args


def test_a_runbook_yaml_above_the_documented_size_is_refused_before_parsing(make_workspace: Any) -> None:
    from runbook.config import MAX_CONFIG_BYTES

    ws = make_workspace(GOOD)
    with ws.config.open("a", encoding="utf-8") as handle:
        handle.write(("# " + "x" * 98 + "\n") * (10 * 1024 * 1024 // 100))  # 10 MB of comments
    size = ws.config.stat().st_size
    assert size > 10_000_000 > MAX_CONFIG_BYTES
    assert_one_line_error(
        ws.runbook("plan", *WINDOW), ["runbook.yaml", f"{size:,} bytes", f"{MAX_CONFIG_BYTES:,}"]
    )
    assert not ws.db.parent.exists()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    assert f"{MAX_CONFIG_BYTES:,} bytes" in docs
