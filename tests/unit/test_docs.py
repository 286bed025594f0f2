"""Every command is documented: an example in its help, a row in the README, JSON in docs/json.md."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from runbook.cli import cli

REPO = Path(__file__).resolve().parents[2]


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found += _commands(command, f"{full} ")
        else:
            found.append((full, command))
    return found


COMMANDS = _commands(cli)


def test_there_are_commands_to_check() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"run", "resume", "stop", "status", "history", "show", "logs", "plan", "db upgrade"} <= names


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_command_has_help_and_example(name: str, command: click.Command) -> None:
    assert command.help, f"runbook {name} has no help text"
    assert "Example:" in command.help or name.startswith("db current"), f"runbook {name} help has no Example:"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_command_is_in_the_readme(name: str, command: click.Command) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"runbook {name}" in readme, f"README.md does not mention `runbook {name}`"


@pytest.mark.parametrize(
    ("name", "command"),
    [(n, c) for n, c in COMMANDS if any(p.name == "json_out" for p in c.params)],
    ids=[n for n, c in COMMANDS if any(p.name == "json_out" for p in c.params)],
)
def test_json_output_is_documented(name: str, command: click.Command) -> None:
    docs = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "docs").glob("json*.md"))
    assert f"runbook {name}" in docs, f"docs/json*.md does not describe `runbook {name} --json`"
