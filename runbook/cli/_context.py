"""What every command shares: the options of ``runbook``, the workspace and app it opens, and
how results are printed as JSON. Commands import this module, never ``runbook.cli`` itself."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from runbook.errors import EXIT_BLOCKED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

if TYPE_CHECKING:
    from runbook.app import App
    from runbook.engine.seams import Observer
    from runbook.workspace import Workspace

OUTCOME_EXIT = {
    "succeeded": EXIT_OK,
    "failed": EXIT_FAILED,
    "blocked": EXIT_BLOCKED,
    "interrupted": EXIT_INTERRUPTED,
}


class Context:
    """The ``--config`` and ``--verbose`` options, and the workspace and app opened on first use."""

    def __init__(self, config: str | None, verbose: bool) -> None:
        self.config = config
        self.verbose = verbose
        self._workspace: Workspace | None = None
        self._app: App | None = None

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            from runbook.workspace import Workspace

            self._workspace = Workspace.load(self.config)
        return self._workspace

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = self.make_app()
        return self._app

    def make_app(self, observer: Observer | None = None) -> App:
        from runbook.app import App

        self._app = App(self.workspace, observer=observer)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_ctx = click.make_pass_decorator(Context)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def emit_document(**parts: Any) -> None:
    """A JSON document: ``schema_version`` and the given snapshots as data (docs/json.md)."""
    from runbook.snapshots import document

    emit_json(document(**parts))


def exit_with(status: str) -> NoReturn:
    """Leave with the exit code of a run's outcome (0, 1, 3 or 4)."""
    sys.exit(OUTCOME_EXIT.get(status, EXIT_FAILED))


def command_line() -> str:
    """How this runbook was invoked, for the run's record (secrets are masked when stored)."""
    return " ".join(shlex.quote(arg) for arg in ["runbook", *sys.argv[1:]])


def date_option(name: str, help_text: str) -> Callable[[Any], Any]:
    return click.option(name, type=click.DateTime(["%Y-%m-%d"]), help=help_text)


def as_date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "json_out", is_flag=True, help="Machine-readable output (docs/json.md).")(
        function
    )
