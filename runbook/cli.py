"""The ``runbook`` command line: options, a docstring with an example, and a call into the library.

Only this module prints or exits. Exit codes: 0 ok, 1 a step or run failed, 2 bad usage, config
or state, 3 blocked by a validation gate, 4 interrupted (resumable).
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from runbook.errors import EXIT_BLOCKED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunbookError, UsageError

OUTCOME_EXIT = {
    "succeeded": EXIT_OK,
    "failed": EXIT_FAILED,
    "blocked": EXIT_BLOCKED,
    "interrupted": EXIT_INTERRUPTED,
}


class Context:
    """What every command shares: where the config is, and lazily opened workspace and store."""

    def __init__(self, config: str | None, verbose: bool) -> None:
        self.config = config
        self.verbose = verbose
        self._workspace: Any = None
        self._store: Any = None

    @property
    def workspace(self) -> Any:
        if self._workspace is None:
            from runbook.workspace import Workspace

            self._workspace = Workspace.load(self.config)
        return self._workspace

    @property
    def store(self) -> Any:
        if self._store is None:
            from runbook.state.store import Store

            self._store = Store.open(self.workspace.database_url)
        return self._store

    def runner(self, observer: Any = None) -> Any:
        from runbook.runs import Runner

        return Runner(self.workspace, self.store, observer=observer)


pass_ctx = click.make_pass_decorator(Context)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def fail(error: RunbookError, verbose: bool) -> NoReturn:
    if verbose:
        import traceback

        traceback.print_exception(error)
    click.echo(f"runbook: error: {error.message}", err=True)
    sys.exit(error.exit_code)


def command_line() -> str:
    return " ".join(shlex.quote(arg) for arg in ["runbook", *sys.argv[1:]])


class Group(click.Group):
    """Turns every RunbookError into one line on stderr and its exit code (usage errors: ``main``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RunbookError as error:
            fail(error, bool(ctx.params.get("verbose")))


def show_plan(view: dict[str, Any], json_out: bool, verbose: bool) -> None:
    """A plan as JSON, or as tables followed by its warnings."""
    if json_out:
        emit_json(view)
        return
    from runbook import render

    render.plan(console(), view, verbose=verbose)
    for warning in view["warnings"]:
        click.echo(f"warning: {warning}")


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
    Exit codes: 0 ok, 1 failed, 2 bad usage/config/state, 3 blocked by a gate, 4 interrupted.
    """
    ctx.obj = Context(config, verbose)


def date_option(name: str, help_text: str) -> Callable[[Any], Any]:
    return click.option(name, type=click.DateTime(["%Y-%m-%d"]), help=help_text)


def as_date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


def run_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(
        [
            click.argument("processors", nargs=-1),
            date_option("--start", "First date (YYYY-MM-DD)."),
            date_option("--end", "Last date (YYYY-MM-DD)."),
            click.option(
                "--no-resume", is_flag=True, help="Rerun dates already built with the same code version."
            ),
            click.option("--only-gaps", is_flag=True, help="Only dates never built."),
            click.option("--only-stale", is_flag=True, help="Only dates built with an older code version."),
        ]
    ):
        function = decorator(function)
    return function


def _request(processors: tuple[str, ...], start: Any, end: Any, no_resume: bool, **extra: Any) -> Any:
    from runbook.runs import RunRequest

    return RunRequest(
        processors=list(processors), start=as_date(start), end=as_date(end), resume=not no_resume, **extra
    )


def execute_foreground(obj: Context, run_id: int, json_out: bool = False) -> NoReturn:
    from runbook.render import ProgressBars

    out = console(stderr=json_out)
    observer = ProgressBars(out) if out.is_terminal or not json_out else None
    outcome = obj.runner(observer).execute(run_id)
    run = obj.store.get_run(run_id)
    if json_out:
        from runbook.views import show_view

        emit_json(show_view(obj.store, run))
    else:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(outcome.counts.items()))
        out.print(f"run {run_id} {outcome.status}: {counts}")
        out.print(f"log: {run.log_path}   details: runbook show {run_id}")
        if outcome.status == "interrupted":
            out.print(f"resume with: runbook resume {run_id}")
    sys.exit(OUTCOME_EXIT.get(outcome.status, EXIT_FAILED))


@cli.command()
@run_options
@click.option(
    "--workers", "-w", type=click.IntRange(1, 256), help="Steps run at once (default: config workers)."
)
@click.option("--detach", "-d", is_flag=True, help="Run in the background; print run id, PID and log path.")
@click.option("--dry-run", is_flag=True, help="Show the plan and record nothing.")
@click.option("--force", is_flag=True, help="Start even if another live run covers the same work.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@pass_ctx
def run(obj: Context, processors: tuple[str, ...], start: Any, end: Any, no_resume: bool, only_gaps: bool,
        only_stale: bool, workers: int | None, detach: bool, dry_run: bool, force: bool, json_out: bool) -> None:  # fmt: skip
    """Run processors over a date range (all of them, in dependency order, by default).

    Example: runbook run --start 2024-10-22 --end 2025-01-31 --workers 4 --detach
    """
    from runbook.runs import check_request

    request = _request(
        processors, start, end, no_resume, only_gaps=only_gaps, only_stale=only_stale, workers=workers,
        force=force, command_line=command_line(),
        options={"workers": workers, "no_resume": no_resume, "only_gaps": only_gaps, "only_stale": only_stale},
    )  # fmt: skip
    check_request(obj.workspace.config, request)  # before the state DB is opened
    runner = obj.runner()
    plan = runner.plan(request)
    warnings = runner.extent_warnings(plan)
    if dry_run:
        from runbook.views import plan_view

        show_plan({**plan_view(plan), "warnings": [w.message for w in warnings]}, json_out, verbose=False)
        return
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    created = runner.submit(request, plan)
    if warnings:
        from runbook.extent import record_extent_warnings

        record_extent_warnings(obj.store, created.id, warnings)
    if detach:
        pid = runner.spawn(created.id)
        info = {"run_id": created.id, "pid": pid, "log_path": created.log_path}
        if json_out:
            emit_json(info)
        else:
            click.echo(f"run {created.id} started in the background: PID {pid}, log {created.log_path}")
            click.echo(f"watch: runbook status   runbook logs {created.id} -f")
        return
    execute_foreground(obj, created.id, json_out)


@cli.command(name="_execute", hidden=True)
@click.argument("run_id", type=int)
@pass_ctx
def execute_cmd(obj: Context, run_id: int) -> None:
    """Execute a recorded run in this process (used by --detach)."""
    outcome = obj.runner().execute(run_id)
    sys.exit(OUTCOME_EXIT.get(outcome.status, EXIT_FAILED))


@cli.command()
@click.argument("run_id", type=int, required=False)
@click.option("--detach", "-d", is_flag=True, help="Continue in the background.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@pass_ctx
def resume(obj: Context, run_id: int | None, detach: bool, json_out: bool) -> None:
    """Continue interrupted runs (or RUN_ID, also a failed one) exactly where they stopped.

    Example: runbook resume 12 --detach
    """
    runner = obj.runner()
    todo, alive = runner.resumable(run_id)
    for run in alive:
        click.echo(
            f"run {run.id} is still running (PID {run.pid} on {run.host}): not started twice", err=True
        )
    if not todo:
        if json_out:
            emit_json({"resumed": [], "alive": [r.id for r in alive]})
        elif not alive:
            click.echo("nothing to resume")
        return
    if detach or len(todo) > 1:
        started = []
        for run in todo:
            runner.prepare_resume(run)
            pid = runner.spawn(run.id)
            started.append({"run_id": run.id, "pid": pid, "log_path": run.log_path})
            if not json_out:
                click.echo(f"run {run.id} resumed in the background: PID {pid}, log {run.log_path}")
        if json_out:
            emit_json({"resumed": started, "alive": [r.id for r in alive]})
        return
    runner.prepare_resume(todo[0])
    execute_foreground(obj, todo[0].id, json_out)


@cli.command()
@click.argument("run_id", type=int)
@pass_ctx
def stop(obj: Context, run_id: int) -> None:
    """Stop a run gracefully: in-flight steps end, the run is interrupted and stays resumable.

    Example: runbook stop 12 && runbook resume 12
    """
    run = obj.runner().stop(run_id)
    click.echo(f"run {run_id}: stop requested (PID {run.pid}); resume later with: runbook resume {run_id}")


@cli.command()
@click.option("--recent", default=5, show_default=True, help="Finished runs to include.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output (docs/json.md).")
@pass_ctx
def status(obj: Context, recent: int, json_out: bool) -> None:
    """Active and interrupted runs with progress, rate and ETA, then the latest finished ones.

    Example: runbook status --json | jq '.runs[] | {id, status, progress}'
    """
    from runbook.views import status_view

    view = status_view(obj.store, recent=recent)
    if json_out:
        emit_json(view)
        return
    from runbook.render import runs_table

    if not view["runs"]:
        click.echo("no runs yet: start one with `runbook run --start D --end D`")
        return
    console().print(runs_table(view["runs"], "Runs"))
    for run in view["runs"]:
        if run["status"] == "interrupted":
            click.echo(f"run {run['id']} is interrupted: runbook resume {run['id']}")


@cli.command()
@click.option("--processor", "-p", help="Only runs that include this processor.")
@click.option("--status", "status_", type=click.Choice(
    ["queued", "running", "succeeded", "failed", "interrupted", "blocked", "cancelled"]), help="Only runs in this status.")  # fmt: skip
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]), help="Runs created since then (UTC)."
)
@date_option("--start", "Runs whose dates reach this date or later.")
@date_option("--end", "Runs whose dates reach this date or earlier.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output (docs/json.md).")
@pass_ctx
def history(obj: Context, processor: str | None, status_: str | None, since: Any, start: Any, end: Any,
            limit: int, json_out: bool) -> None:  # fmt: skip
    """Past runs, newest first.

    Example: runbook history --processor player_game_summary --status failed
    """
    from runbook.views import history_view

    overlapping = None
    if start or end:
        overlapping = ((as_date(start) or dt.date.min).isoformat(), (as_date(end) or dt.date.max).isoformat())
    since_utc = since.replace(tzinfo=dt.UTC) if since else None
    view = history_view(obj.store, processor=processor, status=status_, since=since_utc, overlapping=overlapping,
                        limit=limit)  # fmt: skip
    if json_out:
        emit_json(view)
        return
    from runbook.render import runs_table

    console().print(runs_table(view["runs"], "History"))


@cli.command()
@click.argument("run_id", type=int)
@click.option("--tasks", "with_tasks", is_flag=True, help="Include every task (JSON only).")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output (docs/json.md).")
@pass_ctx
def show(obj: Context, run_id: int, with_tasks: bool, json_out: bool) -> None:
    """One run: processors, failures with their error tails, and the event timeline.

    Example: runbook show 12
    """
    from runbook.views import show_view

    run = obj.store.get_run(run_id)
    if run is None:
        raise UsageError(f"run {run_id} not found (see `runbook status`)")
    view = show_view(obj.store, run, with_tasks=with_tasks)
    if json_out:
        emit_json(view)
        return
    from runbook import render

    out = console()
    render.show(out, view)
    if view["checks"]:
        from runbook.cli_checks import print_results

        print_results(out, view["checks"], "Checks:")


@cli.command()
@click.argument("run_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing while the run is active.")
@click.option("--tail", "-n", type=int, help="Only the last N lines.")
@pass_ctx
def logs(obj: Context, run_id: int, follow: bool, tail: int | None) -> None:
    """Print a run's log (every step's output, tagged with processor, date and attempt).

    Example: runbook logs 12 -f
    """
    from runbook.logs import stream_log

    run = obj.store.get_run(run_id)
    if run is None or not run.log_path:
        raise UsageError(f"run {run_id} not found (see `runbook status`)")
    for line in stream_log(obj.store, run, obj.workspace.resolve(run.log_path), follow=follow, tail=tail):
        click.echo(line)


@cli.command()
@run_options
@click.option("--dates", "verbose", is_flag=True, help="List every date with its action or skip reason.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output (docs/json.md).")
@pass_ctx
def plan(obj: Context, processors: tuple[str, ...], start: Any, end: Any, no_resume: bool, only_gaps: bool,
         only_stale: bool, verbose: bool, json_out: bool) -> None:  # fmt: skip
    """What a run would do: every date with its planned action or skip reason. Records nothing.

    Example: runbook plan player_composite_factors --start 2024-10-22 --end 2024-12-31 --dates
    """
    from runbook.runs import check_request
    from runbook.views import plan_view

    request = _request(processors, start, end, no_resume, only_gaps=only_gaps, only_stale=only_stale)
    check_request(obj.workspace.config, request)  # before the state DB is opened
    runner = obj.runner()
    planned = runner.plan(request)
    warnings = [w.message for w in runner.extent_warnings(planned)]
    show_plan({**plan_view(planned), "warnings": warnings}, json_out, verbose)


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


from runbook import cli_checks, cli_db, cli_handoff  # noqa: E402,F401  (they register their commands on `cli`)
