"""``runbook run``, ``resume``, ``stop`` and ``plan``: parse, call the app, print."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from runbook.cli._context import (
    Context,
    as_date,
    command_line,
    date_option,
    emit_json,
    exit_with,
    json_option,
    pass_ctx,
)
from runbook.kinds import RunStatus

if TYPE_CHECKING:
    from runbook.app import Planned, RunRequest


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


def request(processors: tuple[str, ...], start: Any, end: Any, no_resume: bool, **extra: Any) -> RunRequest:
    from runbook.app import RunRequest

    return RunRequest(
        processors=list(processors), start=as_date(start), end=as_date(end), resume=not no_resume, **extra
    )


def print_plan(planned: Planned, json_out: bool, dates: bool, estimate: list[Any] | None = None) -> None:
    from runbook.app.documents import plan_document
    from runbook.cli.output import plan_text

    snapshot = plan_document(planned)
    if json_out:
        if estimate is not None:
            from runbook.snapshots import to_data

            snapshot = {**snapshot, "estimate": to_data(estimate)}
        emit_json(snapshot)
        return
    for line in plan_text(snapshot, dates=dates):
        click.echo(line)
    for warning in snapshot["warnings"]:
        click.echo(f"warning: {warning}")
    for entry in estimate or []:
        click.echo(estimate_line(entry))
    if estimate:
        total = sum(e.estimated_cost_usd or 0.0 for e in estimate)
        click.echo(
            f"estimated cost of the plan: ${total:,.2f} at ${estimate[0].price_per_tib:g}/TiB (on-demand)"
        )


def estimate_line(entry: Any) -> str:
    """One line of ``plan --estimate`` for a processor."""
    from runbook.formatting import human_bytes

    if entry.error is not None:
        return f"estimate {entry.processor}: not estimated: {entry.error}"
    if not entry.tasks:
        return f"estimate {entry.processor}: nothing to run"
    line = (
        f"estimate {entry.processor}: {entry.tasks} task(s), {human_bytes(entry.first_bytes)} on {entry.first_date}, "
        f"{human_bytes(entry.last_bytes)} on {entry.last_date}: ~{human_bytes(entry.estimated_bytes)} in all, "
        f"~${entry.estimated_cost_usd:,.2f}"
    )
    return line + (f" (warning: {entry.warning})" if entry.warning else "")


def execute_here(obj: Context, run_id: int, json_out: bool, *, epoch: int | None = None) -> None:
    """Execute a recorded run in this process with progress bars, print how it ended, exit."""
    from runbook.cli.progress import ProgressBars, console

    out = console(stderr=json_out)
    app = obj.make_app(ProgressBars(out) if out.is_terminal or not json_out else None)
    outcome = app.execute(run_id, seen_epoch=epoch)
    if json_out:
        emit_json(app.show_document(run_id))
    else:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(outcome.counts.items()))
        run = app.get_run(run_id)
        out.print(f"run {run_id} {outcome.status}: {counts}")
        out.print(f"log: {run.log_path}   details: runbook show {run_id}")
        if outcome.status == RunStatus.INTERRUPTED:
            out.print(f"resume with: runbook resume {run_id}")
    exit_with(outcome.status)


@click.command()
@run_options
@click.option(
    "--workers", "-w", type=click.IntRange(1, 256), help="Steps run at once (default: config workers)."
)
@click.option("--detach", "-d", is_flag=True, help="Run in the background; print run id, PID and log path.")
@click.option("--dry-run", is_flag=True, help="Show the plan and record nothing.")
@click.option("--force", is_flag=True, help="Start even if another live run covers the same work.")
@json_option
@pass_ctx
def run(obj: Context, processors: tuple[str, ...], start: Any, end: Any, no_resume: bool, only_gaps: bool,
        only_stale: bool, workers: int | None, detach: bool, dry_run: bool, force: bool, json_out: bool) -> None:  # fmt: skip
    """Run processors over a date range (all of them, in dependency order, by default).

    Example: runbook run --start 2024-10-22 --end 2025-01-31 --workers 4 --detach
    """
    options = {"workers": workers, "no_resume": no_resume, "only_gaps": only_gaps, "only_stale": only_stale}
    wanted = request(processors, start, end, no_resume, only_gaps=only_gaps, only_stale=only_stale, workers=workers,
                     force=force, command_line=command_line(), options=options)  # fmt: skip
    app = obj.app
    planned = app.plan(wanted)
    if dry_run:
        print_plan(planned, json_out, dates=False)
        return
    for warning in planned.warnings:
        click.echo(f"warning: {warning}", err=True)
    created = app.submit(wanted, planned)
    if not detach:
        execute_here(obj, created.id, json_out)
    pid = app.spawn(created.id)
    if json_out:
        from runbook.app.documents import started_document

        emit_json(started_document(created, pid))
        return
    click.echo(f"run {created.id} started in the background: PID {pid}, log {created.log_path}")
    click.echo(f"watch: runbook status   runbook logs {created.id} --tail 20")


@click.command(name="_execute", hidden=True)
@click.argument("run_id", type=int)
@click.option("--epoch", type=int, help="Take the run only if it is still at this epoch (handed over).")
@pass_ctx
def execute(obj: Context, run_id: int, epoch: int | None) -> None:
    """Execute a recorded run in this process (used by --detach)."""
    exit_with(obj.app.execute(run_id, seen_epoch=epoch).status)


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--detach", "-d", is_flag=True, help="Continue in the background.")
@click.option("--join", is_flag=True, help="If RUN_ID has a live controller, help it as a worker instead.")
@click.option("--dry-run", is_flag=True, help="Show the tasks it would run (and reopen); record nothing.")
@click.option("--force", is_flag=True, help="Resume a run stopped by a daily quota before the quota resets.")
@json_option
@pass_ctx
def resume(obj: Context, run_id: int | None, detach: bool, join: bool, dry_run: bool, force: bool,
           json_out: bool) -> None:  # fmt: skip
    """Continue interrupted runs (or RUN_ID, also a failed or blocked one) exactly where they
    stopped: its failed and blocked tasks are reopened with fresh retries, its gates judged again.

    A run whose controller is alive is not started twice: RUN_ID then exits 5 naming its owner,
    or with --join this process works on it as a worker. A run interrupted by a used-up daily
    quota is not resumed before the quota resets (one line says when; exit 4) unless --force.

    Example: runbook resume 12 --detach
    """
    from runbook.errors import RunBusy

    if dry_run:
        print_resume_preview(obj, run_id, json_out)
        return
    try:
        resumed = obj.app.resume(run_id, detach=detach, force=force)
    except RunBusy:
        if not join or run_id is None:
            raise
        report = obj.app.work(run_id=run_id, idle_exit=5.0, say=lambda line: click.echo(line, err=True))
        click.echo(
            f"joined run {run_id} as worker {report.worker_id}: {report.tally.done} task(s) done ({report.reason})"
        )
        return
    for line in resumed.waiting:
        click.echo(line, err=True)
    for run in resumed.alive:
        click.echo(
            f"run {run.id} is still running (PID {run.pid} on {run.host}): not started twice", err=True
        )
    for run, pid in resumed.watchers:
        click.echo(f"run {run.id}: PID {run.pid} runs on; its new watcher is PID {pid}", err=json_out)
    if resumed.here is not None:
        execute_here(obj, resumed.here.id, json_out, epoch=resumed.epoch)
    if json_out:
        from runbook.app.documents import resumed_document

        emit_json(resumed_document(resumed))
        return
    for run, pid in resumed.detached:
        click.echo(f"run {run.id} resumed in the background: PID {pid}, log {run.log_path}")
    if not resumed.detached and not resumed.alive and not resumed.watchers:
        click.echo("nothing to resume")


def print_resume_preview(obj: Context, run_id: int | None, json_out: bool) -> None:
    """``runbook resume --dry-run``: per run, the tasks it would run, by processor and date range."""
    from runbook.app.documents import resume_preview_document

    preview = obj.app.resume_preview(run_id)
    found = resume_preview_document(preview)
    if json_out:
        emit_json(found)
        return
    for entry in found["runs"]:
        reopen = ", ".join(f"{n} {s}" for s, n in entry["reopen"].items() if n) or "nothing"
        more = ", ".join(f"{n} {s}" for s, n in entry["continue"].items() if n) or "nothing"
        done = f"; skip {entry['already_done']} built by another run since" if entry["already_done"] else ""
        click.echo(f"run {entry['run_id']} ({entry['status']}): would reopen {reopen}; continue {more}{done}")
        for processor, ranges in entry["ranges"].items():
            spans = ", ".join(
                r["start"] if r["start"] == r["end"] else f"{r['start']}..{r['end']}" for r in ranges
            )
            click.echo(f"  {processor}: {sum(r['dates'] for r in ranges)} date(s): {spans}")
    for run in preview.alive:
        click.echo(f"run {run.id} is still running (PID {run.pid} on {run.host}): it would be left alone")
    for run in preview.rewatch:
        click.echo(f"run {run.id}: PID {run.pid} runs without a watcher: a new watcher would follow it")
    if not found["runs"] and not preview.alive and not preview.rewatch:
        click.echo("nothing to resume")


@click.command()
@click.argument("run_id", type=int)
@pass_ctx
def stop(obj: Context, run_id: int) -> None:
    """Stop a run gracefully: in-flight steps end, the run is interrupted and stays resumable.

    An adopted run's process gets SIGTERM; its watcher records the dates it reached, and `runbook
    resume` builds the rest with the processor's own step.

    Example: runbook stop 12 && runbook resume 12
    """
    from runbook.app.documents import stopped_document

    click.echo(stopped_document(obj.app.stop(run_id))["message"])


@click.command()
@run_options
@click.option("--dates", "dates", is_flag=True, help="List every date with its action or skip reason.")
@click.option(
    "--estimate",
    is_flag=True,
    help="Dry-run each SQL step (first and last date): bytes and cost of the range.",
)
@json_option
@pass_ctx
def plan(obj: Context, processors: tuple[str, ...], start: Any, end: Any, no_resume: bool, only_gaps: bool,
         only_stale: bool, dates: bool, estimate: bool, json_out: bool) -> None:  # fmt: skip
    """What a run would do: every date with its planned action or skip reason. Records nothing.

    With --estimate, each SQL processor's step is dry-run (BigQuery: nothing is billed) for its
    first and last planned date, and the bytes and the on-demand cost of the whole range printed.

    Example: runbook plan player_composite_factors --start 2024-10-22 --end 2024-12-31 --estimate
    """
    wanted = request(processors, start, end, no_resume, only_gaps=only_gaps, only_stale=only_stale)
    planned = obj.app.plan(wanted)
    print_plan(planned, json_out, dates, obj.app.estimate(planned.plan) if estimate else None)


@click.command()
@click.option("--run", "run_id", type=int, help="Only this run (default: every active run).")
@click.option(
    "--threads", "-w", type=click.IntRange(1, 256), help="Steps run at once (default: config workers)."
)
@click.option("--max-tasks", type=click.IntRange(min=1), help="Stop after this many tasks.")
@click.option(
    "--idle-exit", type=float, metavar="SECONDS", help="Stop after this long with nothing to claim."
)
@json_option
@pass_ctx
def worker(obj: Context, run_id: int | None, threads: int | None, max_tasks: int | None, idle_exit: float | None,
           json_out: bool) -> None:  # fmt: skip
    """Claim and run the ready tasks of active runs, on this machine, beside their controller.

    Needs only this workspace's runbook.yaml and the shared state store (RUNBOOK_DATABASE_URL to
    the team's PostgreSQL for other machines). Pools, per-processor caps and leases hold across
    every process. Stops on SIGTERM (handing back what it runs), after --max-tasks, or after
    --idle-exit seconds without work.

    Example: RUNBOOK_DATABASE_URL=postgresql://runbook@db/runbook runbook worker --idle-exit 60
    """
    report = obj.app.work(run_id=run_id, threads=threads, max_tasks=max_tasks, idle_exit=idle_exit,
                          say=lambda line: click.echo(line, err=True))  # fmt: skip
    if json_out:
        from runbook.app.documents import worker_document

        emit_json(worker_document(report))
        return
    click.echo(
        f"worker {report.worker_id}: {report.tally.done} task(s) done, {report.tally.failed} failed ({report.reason})"
    )


@click.command()
@click.argument("pid", type=int)
@click.option(
    "--log", "log", required=True, metavar="FILE", help="The log the process writes (its progress)."
)
@click.option("--processor", "-p", required=True, help="The processor whose dates it builds.")
@date_option("--start", "First date it builds (YYYY-MM-DD).")
@date_option("--end", "Last date it builds (YYYY-MM-DD).")
@click.option(
    "--pattern",
    metavar="REGEX",
    help="Picks the date out of a log line: group 'date', else group 1, else the match "
    r"(default: an ISO date, \d{4}-\d{2}-\d{2}).",
)
@click.option("--date-format", metavar="FORMAT", help="strptime format of that date (default: %Y-%m-%d).")
@click.option("--force", is_flag=True, help="Record it even if a live run covers the same dates.")
@json_option
@pass_ctx
def adopt(obj: Context, pid: int, log: str, processor: str, start: Any, end: Any, pattern: str | None,
          date_format: str | None, force: bool, json_out: bool) -> None:  # fmt: skip
    r"""Record a process started outside runbook (nohup, a notebook) as a run, and follow it.

    Returns at once and leaves a small watcher in the background (its own session: closing the
    terminal does not end it). Liveness comes from its PID; progress, rate and ETA from the highest
    date of --start..--end the log shows. When the process ends, the dates its log reached are
    built (and the processor's checks run); `runbook stop` signals it; `runbook resume` restarts a
    lost watcher, or builds what the process never reached.

    Example: runbook adopt 48213 --log /tmp/pgs.log --processor player_game_summary --start 2024-11-01 --end 2024-11-30 --pattern 'Processing game date (\d{4}-\d{2}-\d{2})'
    """
    adopted = obj.app.adopt(pid, log, processor, as_date(start), as_date(end), pattern=pattern,
                            date_format=date_format, force=force)  # fmt: skip
    run = adopted.run
    if json_out:
        from runbook.app.documents import adopted_document

        emit_json(adopted_document(adopted, pid))
        return
    click.echo(
        f"run {run.id} adopted PID {pid} ({processor} {run.start_date}..{run.end_date}); watcher PID {adopted.watcher_pid}"
    )
    click.echo(f"watch: runbook status   runbook logs {run.id} -f   stop: runbook stop {run.id}")


@click.command(name="_follow", hidden=True)
@click.argument("run_id", type=int)
@click.option("--epoch", type=int, required=True, help="Take the run only if it is still at this epoch.")
@pass_ctx
def follow(obj: Context, run_id: int, epoch: int) -> None:
    """Follow an adopted run until its process ends (the watcher `runbook adopt` leaves)."""
    import datetime as dt

    def say(line: str) -> None:
        click.echo(f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {line}")

    say(f"run {run_id}: {obj.app.follow_adopted(run_id, epoch=epoch, say=say)}")


COMMANDS = [run, execute, resume, stop, plan, worker, adopt, follow]
