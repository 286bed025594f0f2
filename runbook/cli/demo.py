"""``runbook demo``: the seeds' NBA pipeline on a synthetic warehouse, end to end."""

from __future__ import annotations

import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from runbook.cli._context import Context, command_line, exit_with, pass_ctx


@click.command()
@click.option("--dir", "folder", default="demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Workspace folder (created if missing).")  # fmt: skip
@click.option("--workers", "-w", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--fresh", is_flag=True, help="Delete the demo's state first and build everything again.")
@pass_ctx
def demo(obj: Context, folder: Path, workers: int, fresh: bool) -> None:
    """Build the demo workspace and run the seeds' NBA pipeline on it, with progress and checks.

    A DuckDB warehouse with a synthetic dataset, a runbook.yaml of SQL MERGE steps, and a
    SQLite state store, all in FOLDER. The run happens in a session whose end writes the handoff
    to FOLDER/handoffs/. Run it again and it resumes: built dates are skipped.

    Example: runbook demo && runbook -c demo/runbook.yaml status
    """
    from runbook.app import prepare_demo_folder
    from runbook.cli.output import check_lines
    from runbook.cli.progress import ProgressBars, console
    from runbook.snapshots import to_data

    config = prepare_demo_folder(folder, fresh=fresh)
    out = console()
    out.print(f"demo workspace: {folder}/ (DuckDB warehouse, SQLite state, runbook.yaml)", highlight=False)
    obj.config = str(config)
    app = obj.make_app(ProgressBars(out))
    result = app.demo(workers=workers, command_line=command_line())
    plan = result.planned.plan
    for warning in result.planned.warnings:
        click.echo(f"warning: {warning}", err=True)
    skipped = Counter(task.skip_reason for task in plan.tasks if task.skip_reason)
    steps = sum(1 for task in plan.tasks if task.runnable)
    _say(out, f"{len(plan.processors)} processors, {plan.start}..{plan.end}, {workers} workers: {steps} step(s) to run"
         + (f"; skipped: {_counts(skipped)}" if skipped else ""))  # fmt: skip
    if result.checks:
        title = (
            f"Check results (run {result.run_id}):"
            if result.checks_from_this_run
            else "Check results (latest, from earlier runs):"
        )
        click.echo("\n".join(check_lines(to_data(result.checks), title)))
    done = Counter({k: v for k, v in result.outcome.counts.items() if k != "skipped"})
    _say(out, f"run {result.run_id} {result.outcome.status} in {result.seconds:.1f}s: {_counts(done) or 'nothing run'}"
         + (f"; skipped: {_counts(result.skipped)}" if result.skipped else ""))  # fmt: skip
    if result.handoff:
        _say(out, f"handoff: {folder / result.handoff}")
    quoted, program = shlex.quote(str(config)), _program()
    _say(out, "\nNext, look at:")
    for args, meaning in (
        ("status", "runs with progress, rate and ETA"),
        ("history", "every run so far"),
        (f"show {result.run_id}", "this run: skip reasons, checks, events"),
        ("checks history", "check values over time"),
        ("handoff", "the note for the next session"),
    ):
        _say(out, f"  {program} -c {quoted} {args:<16} {meaning}")
    _say(out, f"Run `{program} demo` again: it resumes and skips every date already built.")
    exit_with(result.outcome.status)


def _say(out: Any, text: str) -> None:
    out.print(text, highlight=False, markup=False, soft_wrap=True)


def _counts(counts: Counter[Any]) -> str:
    return ", ".join(f"{count} {key}" for key, count in sorted(counts.items(), key=lambda kv: -kv[1]))


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


COMMANDS = [demo]
