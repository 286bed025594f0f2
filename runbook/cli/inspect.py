"""``runbook status``, ``history``, ``show``, ``logs`` and ``coverage``: they only read."""

from __future__ import annotations

from typing import Any

import click

from runbook.cli._context import Context, as_date, date_option, emit_json, json_option, pass_ctx
from runbook.kinds import RunStatus


def echo_lines(lines: list[str]) -> None:
    click.echo("\n".join(lines))


@click.command()
@click.option("--recent", default=5, show_default=True, help="Finished runs to include.")
@json_option
@pass_ctx
def status(obj: Context, recent: int, json_out: bool) -> None:
    """Active and interrupted runs with progress, rate and ETA, then the latest finished ones.

    Example: runbook status --json | jq '.runs[] | {id, status, progress}'
    """
    from runbook.snapshots import to_data

    if json_out:
        emit_json(obj.app.status_document(recent=recent))
        return
    runs = obj.app.status(recent=recent)
    if not runs:
        click.echo("no runs yet: start one with `runbook run --start D --end D`")
        return
    from runbook.cli.output import runs_text

    echo_lines(runs_text(to_data(runs)))
    throttled = [
        f"{p.name} {p.effective_slots}/{p.size}" for p in obj.app.pools() if p.effective_slots < p.size
    ]
    if throttled:
        click.echo(f"pools throttled by the warehouse (effective/configured slots): {', '.join(throttled)}")
    for run in runs:
        if run.status == RunStatus.INTERRUPTED and run.resume_after is not None:
            click.echo(
                f"run {run.id} is interrupted: {run.error}; runbook resume {run.id} after {run.resume_after}"
            )
        elif run.status == RunStatus.INTERRUPTED:
            click.echo(f"run {run.id} is interrupted: runbook resume {run.id}")
        elif run.adopted is not None and run.adopted.watcher_alive is False and run.adopted.process_alive:
            click.echo(
                f"run {run.id}: nothing records PID {run.adopted.pid}'s progress: runbook resume {run.id}"
            )


@click.command()
@click.option("--processor", "-p", help="Only runs that include this processor.")
@click.option(
    "--status", "status_", type=click.Choice([s.value for s in RunStatus]), help="Only runs in this status."
)
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]), help="Runs created since then (UTC)."
)
@date_option("--start", "Runs whose dates reach this date or later.")
@date_option("--end", "Runs whose dates reach this date or earlier.")
@click.option("--limit", default=50, show_default=True)
@json_option
@pass_ctx
def history(obj: Context, processor: str | None, status_: str | None, since: Any, start: Any, end: Any,
            limit: int, json_out: bool) -> None:  # fmt: skip
    """Past runs, newest first.

    Example: runbook history --processor player_game_summary --status failed
    """
    found = obj.app.history_document(processor=processor, status=status_, since=since, start=as_date(start),
                                     end=as_date(end), limit=limit)  # fmt: skip
    if json_out:
        emit_json(found)
        return
    from runbook.cli.output import runs_text

    filtered = any(v is not None for v in (processor, status_, since, start, end))
    empty = "no runs match" if filtered else "no runs yet: start one with `runbook run --start D --end D`"
    echo_lines(runs_text(found["runs"]) if found["runs"] else [empty])


@click.command()
@click.argument("run_id", type=int)
@click.option("--tasks", "with_tasks", is_flag=True, help="Include every task (JSON only).")
@json_option
@pass_ctx
def show(obj: Context, run_id: int, with_tasks: bool, json_out: bool) -> None:
    """One run: processors, failures grouped by error, blocked dates, checks and events.

    Example: runbook show 12
    """
    detail = obj.app.show_document(run_id, with_tasks=with_tasks)
    if json_out:
        emit_json(detail)
        return
    from runbook.cli.output import show_text

    echo_lines(show_text(detail))


@click.command()
@click.argument("run_id", type=int)
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing while the run is active (never returns before)."
)
@click.option("--tail", "-n", type=click.IntRange(min=1), help="Only the last N lines.")
@pass_ctx
def logs(obj: Context, run_id: int, follow: bool, tail: int | None) -> None:
    """Print a run's log (every step's output, tagged with processor, date and attempt).

    Example: runbook logs 12 --tail 50
    """
    for line in obj.app.log_lines(run_id, follow=follow, tail=tail):
        click.echo(line)


@click.command()
@click.argument("processor")
@date_option("--start", "First date (default: calendar.start, else the first date any run covered).")
@date_option("--end", "Last date (default: calendar.end, else the last date any run covered).")
@click.option("--dates", "list_dates", is_flag=True, help="List every date with its state.")
@json_option
@pass_ctx
def coverage(obj: Context, processor: str, start: Any, end: Any, list_dates: bool, json_out: bool) -> None:
    """Which dates of a processor are built, by which run, when, with which code; gaps and stale dates.

    Example: runbook coverage player_game_summary --start 2024-10-22 --end 2025-06-30
    """
    snapshot = obj.app.coverage_document(processor, as_date(start), as_date(end))
    if json_out:
        emit_json(snapshot)
        return
    from runbook.cli.output import coverage_lines

    echo_lines(coverage_lines(snapshot, list_dates))


COMMANDS = [status, history, show, logs, coverage]
