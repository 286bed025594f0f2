"""``runbook validate`` and ``runbook checks history``."""

from __future__ import annotations

import sys
from typing import Any

import click

from runbook.cli._context import Context, as_date, date_option, emit_json, json_option, pass_ctx
from runbook.errors import EXIT_BLOCKED


@click.command()
@click.argument("processors", nargs=-1)
@date_option("--start", "First date (default: calendar.start).")
@date_option("--end", "Last date (default: calendar.end).")
@json_option
@pass_ctx
def validate(obj: Context, processors: tuple[str, ...], start: Any, end: Any, json_out: bool) -> None:
    """Run the checks of PROCESSORS (all by default) now and store their results.

    Exit code 3 when a `severity: block` check fails, 0 otherwise (failed `warn` checks are shown).

    Example: runbook validate player_game_summary --start 2024-10-22 --end 2024-12-31
    """
    from runbook.cli.output import check_lines
    from runbook.snapshots import to_data

    found = obj.app.validate(list(processors), as_date(start), as_date(end))
    if json_out:
        from runbook.app.documents import validation_document

        emit_json(validation_document(found))
    elif not found.results:
        click.echo("no checks configured" + (f" for {', '.join(processors)}" if processors else ""))
    else:
        click.echo("\n".join(check_lines(to_data(found.results), f"Checks {found.start}..{found.end}:")))
        failed = [r for r in found.results if not r.passed]
        blocking = f" ({len(found.blocking_failures)} blocking)" if found.blocking_failures else ""
        click.echo(
            f"{len(found.results)} check(s): {len(found.results) - len(failed)} passed, {len(failed)} failed{blocking}"
        )
    if found.config_error is not None:
        raise found.config_error
    if found.blocking_failures:
        sys.exit(EXIT_BLOCKED)


@click.group()
def checks() -> None:
    """Stored results of validation checks."""


@checks.command("history")
@click.argument("check", required=False)
@click.option("--processor", "-p", help="Only checks of this processor.")
@click.option("--limit", default=20, show_default=True, help="Latest results per check.")
@json_option
@pass_ctx
def checks_history(
    obj: Context, check: str | None, processor: str | None, limit: int, json_out: bool
) -> None:
    """A check's values over time (every check by default), oldest first.

    Example: runbook checks history usage_rate_coverage --processor player_game_summary
    """
    found = obj.app.check_history_document(check, processor, limit)
    if json_out:
        emit_json(found)
        return
    if not found["checks"]:
        click.echo("no check results yet: they are stored by `runbook run` and `runbook validate`")
        return
    from runbook.cli.output import check_history_lines

    click.echo("\n".join(check_history_lines(found["checks"])))


COMMANDS = [validate, checks]
