"""The ``runbook`` command line: a thin layer over :class:`runbook.app.App`.

Each command parses its options, calls one application method and prints the result (a table for
people, JSON with ``--json``). Only this package prints or exits. Exit codes: 0 ok, 1 a step or
run failed, 2 bad usage, config or state, 3 blocked by a validation gate, 4 interrupted
(resumable), 5 busy (the run has a live owner), 6 the state store stopped taking writes mid-run.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from runbook.cli import checks, db, demo, inspect, mcp, runs, serve, sessions
from runbook.cli._context import Context
from runbook.errors import EXIT_OK, RunbookError, StoreUnavailable, UsageError


def fail(error: RunbookError, verbose: bool) -> NoReturn:
    if verbose:
        import traceback

        traceback.print_exception(error)
    click.echo(f"runbook: error: {error.message}", err=True)
    if isinstance(error, StoreUnavailable):
        # The store's files may be unwritable: the normal exit would close its connections,
        # and SQLite would die writing to them (see Database.ensure_writable).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(error.exit_code)
    sys.exit(error.exit_code)


class Group(click.Group):
    """Turns every RunbookError into one line on stderr and its exit code (usage errors: ``main``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RunbookError as error:
            fail(error, bool(ctx.params.get("verbose")))
        finally:
            if isinstance(ctx.obj, Context):
                ctx.obj.close()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "-c",
    envvar="RUNBOOK_CONFIG",
    metavar="PATH",
    help="runbook.yaml (default: found upward from here).",
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="runbook")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: bool) -> None:
    """runbook: plan, run, resume, validate and hand off date-partitioned backfills.

    Environment: RUNBOOK_CONFIG (path of runbook.yaml), RUNBOOK_DATABASE_URL (state store URL).
    Exit codes: 0 ok, 1 failed, 2 bad usage/config/state, 3 blocked by a gate, 4 interrupted,
    5 busy (the run has a live owner), 6 the state store stopped taking writes.
    """
    ctx.obj = Context(config, verbose)


for module in (runs, inspect, checks, sessions, db, demo, serve, mcp):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Entry point: usage errors anywhere (also in top-level options) become one line and exit 2."""
    try:
        code = cli.main(prog_name="runbook", standalone_mode=False)
    except click.UsageError as error:
        where = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        click.echo(f"runbook: error: {error.format_message()}{where}", err=True)
        sys.exit(UsageError.exit_code)
    except click.ClickException as error:
        click.echo(f"runbook: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("runbook: aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
