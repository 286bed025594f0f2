"""``runbook validate``, ``runbook checks history`` and ``runbook demo``.

These commands live beside :mod:`runbook.cli` and register on its group (the import at the end
of ``cli.py``); like every command they parse options, call the library and print its result.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from runbook.cli import (
    OUTCOME_EXIT,
    Context,
    as_date,
    cli,
    command_line,
    console,
    date_option,
    emit_json,
    pass_ctx,
)
from runbook.errors import EXIT_BLOCKED, EXIT_FAILED, ConfigError, UsageError
from runbook.expectations import explain, show

DEMO_NAME = "nba-demo"


@cli.command()
@click.argument("processors", nargs=-1)
@date_option("--start", "First date (default: calendar.start).")
@date_option("--end", "Last date (default: calendar.end).")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@pass_ctx
def validate(obj: Context, processors: tuple[str, ...], start: Any, end: Any, json_out: bool) -> None:
    """Run the checks of PROCESSORS (all by default) now and store their results.

    Exit code 3 when a `severity: block` check fails, 0 otherwise (failed `warn` checks are shown).

    Example: runbook validate player_game_summary --start 2024-10-22 --end 2024-12-31
    """
    from runbook.checks import CheckRunner, result_view
    from runbook.runs import RunRequest, check_request

    request = RunRequest(processors=list(processors), start=as_date(start), end=as_date(end))
    first, last = check_request(obj.workspace.config, request)
    runner = obj.runner()
    checker = CheckRunner(obj.workspace, obj.store, runner.warehouse, runner.calendar)
    outcomes = checker.validate(list(processors), first, last)
    views = [result_view(outcome.result) for outcome in outcomes]
    blocking = [outcome.summary() for outcome in outcomes if outcome.blocking_failure]
    if json_out:
        emit_json(
            {
                "schema_version": 1,
                "start": first.isoformat(),
                "end": last.isoformat(),
                "passed": all(view["passed"] for view in views),
                "blocking_failures": blocking,
                "results": views,
            }
        )
    elif not views:
        click.echo("no checks configured" + (f" for {', '.join(processors)}" if processors else ""))
    else:
        print_results(console(), views, f"Checks {first}..{last}:")
        failed = [view for view in views if not view["passed"]]
        click.echo(
            f"{len(views)} check(s): {len(views) - len(failed)} passed, {len(failed)} failed"
            + (f" ({len(blocking)} blocking)" if blocking else "")
        )
    config_error = next((outcome.config_error for outcome in outcomes if outcome.config_error), None)
    if config_error is not None:
        raise config_error
    if blocking:
        sys.exit(EXIT_BLOCKED)


@cli.group()
def checks() -> None:
    """Stored results of validation checks."""


@checks.command("history")
@click.argument("check", required=False)
@click.option("--processor", "-p", help="Only checks of this processor.")
@click.option("--limit", default=20, show_default=True, help="Latest results per check.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@pass_ctx
def checks_history(
    obj: Context, check: str | None, processor: str | None, limit: int, json_out: bool
) -> None:
    """A check's values over time (every check by default), oldest first.

    Example: runbook checks history usage_rate_coverage --processor player_game_summary
    """
    from runbook.checks import history_view

    results = obj.store.check_results(processor=processor, check_name=check)
    view = history_view(results, check=check, processor=processor, limit=limit)
    if json_out:
        emit_json(view)
        return
    if not view["checks"]:
        click.echo("no check results yet: they are stored by `runbook run` and `runbook validate`")
        return
    out = console()
    for entry in view["checks"]:
        out.print(f"{entry['processor']}.{entry['check']} ({entry['severity']})", style="bold", markup=False)
        for metric, values in entry["series"].items():
            out.print(
                f"  {metric}: {' -> '.join(show(value) for value in values)}", markup=False, soft_wrap=True
            )
        out.print(history_table(entry["results"]))


@cli.command()
@click.option(
    "--dir",
    "folder",
    default="demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Workspace folder (created if missing).",
)
@click.option("--workers", "-w", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--fresh", is_flag=True, help="Delete the demo workspace first and build everything again.")
def demo(folder: Path, workers: int, fresh: bool) -> None:
    """Build the demo workspace and run the seeds' NBA pipeline on it, with progress and checks.

    A DuckDB warehouse with a synthetic dataset, a runbook.yaml of SQL MERGE steps, and a
    SQLite state store, all in FOLDER. Run it again and it resumes: built dates are skipped.

    Example: runbook demo && runbook -c demo/runbook.yaml status
    """
    from runbook.demo import DEMO_END, DEMO_START, create_demo_workspace
    from runbook.extent import record_extent_warnings
    from runbook.render import ProgressBars
    from runbook.runs import Runner, RunRequest
    from runbook.state.store import Store
    from runbook.workspace import Workspace

    began = time.monotonic()
    _prepare_demo_folder(folder, fresh)
    out = console()
    out.print(f"demo workspace: {folder}/ (DuckDB warehouse, SQLite state, runbook.yaml)", highlight=False)
    workspace = Workspace.load(str(create_demo_workspace(folder)))
    store = Store.open(workspace.database_url)
    runner = Runner(workspace, store, observer=ProgressBars(out))
    request = RunRequest(
        processors=[], start=DEMO_START, end=DEMO_END, workers=workers,
        command_line=command_line(), options={"workers": workers, "demo": True},
    )  # fmt: skip
    plan = runner.plan(request)
    warnings = runner.extent_warnings(plan)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    skipped = Counter(task.skip_reason for task in plan.tasks if task.skip_reason)
    steps = sum(1 for task in plan.tasks if task.runnable)
    out.print(
        f"{len(plan.processors)} processors, {DEMO_START}..{DEMO_END}, {workers} workers: {steps} step(s) to run"
        + (f"; skipped: {_counts(skipped)}" if skipped else ""),
        highlight=False,
        soft_wrap=True,
    )
    created = runner.submit(request, plan)
    assert created.id is not None
    record_extent_warnings(store, created.id, warnings)
    outcome = runner.execute(created.id)
    results = store.check_results(run_id=created.id)
    title = f"Check results (run {created.id})"
    if not results:
        latest = {(r.processor, r.check_name): r for r in store.check_results()}
        results, title = list(latest.values()), "Check results (latest, from earlier runs)"
    if results:
        from runbook.checks import result_view

        print_results(out, [result_view(result) for result in results], title + ":")
    seconds = time.monotonic() - began
    reasons = Counter(t.skip_reason or "skipped" for t in store.tasks(created.id, statuses=["skipped"]))
    done = Counter({k: v for k, v in outcome.counts.items() if k != "skipped"})
    out.print(
        f"run {created.id} {outcome.status} in {seconds:.1f}s: {_counts(done) or 'nothing run'}"
        + (f"; skipped: {_counts(reasons)}" if reasons else ""),
        highlight=False,
        soft_wrap=True,
    )
    config = shlex.quote(str(folder / "runbook.yaml"))
    program = _program()
    out.print("\nNext, look at:", highlight=False)
    for args, meaning in (
        ("status", "runs with progress, rate and ETA"),
        ("history", "every run so far"),
        (f"show {created.id}", "this run: skip reasons, checks, events"),
        ("checks history", "check values over time"),
        ("handoff", "the note for the next session"),
    ):
        out.print(
            f"  {program} -c {config} {args:<16} {meaning}", highlight=False, markup=False, soft_wrap=True
        )
    out.print(f"Run `{program} demo` again: it resumes and skips every date already built.", highlight=False)
    sys.exit(OUTCOME_EXIT.get(outcome.status, EXIT_FAILED))


def _program() -> str:
    """How to call runbook from here: ``runbook`` when it is on PATH, else the path of this one."""
    import shutil

    invoked = Path(sys.argv[0])
    if invoked.name == "runbook" and shutil.which("runbook") != str(invoked.resolve()):
        try:
            return str(invoked.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(invoked.resolve())
    return "runbook"


def _prepare_demo_folder(folder: Path, fresh: bool) -> None:
    """Refuse a folder holding another project; with ``fresh``, delete the demo folder first."""
    from runbook.config import load_config

    config = folder / "runbook.yaml"
    if config.exists():
        try:
            is_demo = load_config(config).name == DEMO_NAME
        except ConfigError:
            is_demo = False
        if not is_demo:
            raise UsageError(
                f"{folder} is not a runbook demo workspace (its runbook.yaml is not named {DEMO_NAME}): "
                "not touching it; pass another --dir"
            )
    if fresh and folder.exists():
        if not config.exists() and any(folder.iterdir()):
            raise UsageError(
                f"--fresh: {folder} is not a runbook demo workspace: not deleting it; pass another --dir"
            )
        shutil.rmtree(folder)


def _counts(counts: Counter[Any]) -> str:
    return ", ".join(f"{count} {key}" for key, count in sorted(counts.items(), key=lambda kv: -kv[1]))


def _verdict(view: dict[str, Any]) -> str:
    if view["passed"]:
        return "[green]pass[/]"
    return "[red]FAIL[/]" if view["severity"] == "block" else "[yellow]warn[/]"


def _detail(view: dict[str, Any]) -> str:
    if view["error"]:
        return f"error: {view['error']}"
    return "; ".join(explain(c) for c in view["conditions"] if not c["passed"] or view["passed"])


def print_results(out: Any, views: list[dict[str, Any]], title: str) -> None:
    """One line per check: verdict, processor.check (severity), the conditions with their values."""
    from rich.markup import escape

    out.print(title, highlight=False, markup=False)
    for view in views:
        name = f"{view['processor']}.{view['check']} ({view['severity']})"
        out.print(
            f"  {_verdict(view)}  {escape(name)}: {escape(_detail(view))}", highlight=False, soft_wrap=True
        )


def history_table(views: list[dict[str, Any]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for column in ("at", "run", "dates", "result", "metrics"):
        table.add_column(column, overflow="fold")
    for view in views:
        metrics = ", ".join(f"{key}={show(value)}" for key, value in view["metrics"].items())
        table.add_row(
            (view["at"] or "-")[:19].replace("T", " "),
            str(view["run_id"]) if view["run_id"] is not None else "validate",
            f"{view['start_date']}..{view['end_date']}",
            _verdict(view),
            Text(view["error"] and f"error: {view['error']}" or metrics),
        )
    return table
