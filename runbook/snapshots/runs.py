"""Runs as snapshots: ``status``, ``history`` and ``show`` (and the runs of the handoff).

Whatever the number of runs or tasks, a list of runs costs four aggregate queries: the runs, their
task counts by processor, status and skip reason, their finished-step windows (for rates) and
their newest check outcomes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from runbook.clock import utcnow
from runbook.engine.liveness import (
    adopted_alive,
    adopted_pid,
    effective_status,
    liveness,
    rate_and_eta,
    this_host,
    worker_alive,
)
from runbook.formatting import error_line, iso_utc, rate
from runbook.kinds import (
    ACTIVE_RUN_STATUSES,
    FINISHED_RUN_STATUSES,
    STEP_FINISHED,
    WATCHER,
    RunOrigin,
    RunStatus,
    TaskStatus,
)
from runbook.snapshots.model import (
    AdoptedSnapshot,
    BlockedGroup,
    CheckSummary,
    Cost,
    DateRange,
    EventSnapshot,
    FailureGroup,
    Owner,
    ProcessorProgress,
    Progress,
    RunDetail,
    RunSnapshot,
    TaskSnapshot,
    WorkerSnapshot,
)
from runbook.state.queries import Queries
from runbook.state.records import Event, Run, Task, Worker
from runbook.state.run_queries import Outcomes

Liveness = Callable[[Run], bool | None]
ERROR_TAIL_LINES = 15
_DATES = re.compile(r" \d{4}-\d{2}-\d{2}(?:\.\.\d{4}-\d{2}-\d{2})?")


def run_snapshots(
    q: Queries,
    runs: Sequence[Run],
    *,
    now: dt.datetime | None = None,
    alive: Liveness = liveness,
    outcomes: dict[int, Outcomes] | None = None,
    costs: bool = False,
) -> list[RunSnapshot]:
    """Snapshots of ``runs`` (in the given order) from three aggregate queries (a fourth for
    what their warehouse jobs cost, with ``costs``; ``outcomes``: their
    :meth:`Queries.outcomes`, when the caller read them already)."""
    now = now or utcnow()
    ids = [run.id for run in runs]
    if outcomes is None:
        outcomes = q.outcomes(ids)
    # The rate of a live run counts from its steps' first start to their last finish; an ended
    # run's from its start to its end (its tasks' times need not be read again).
    live = [run.id for run in runs if run.finished_at is None or run.status in ACTIVE_RUN_STATUSES]
    windows = q.finished_windows(live)
    for run in runs:
        if run.id not in windows:
            finished = sum(n for (_, status, _), n in outcomes[run.id].items() if status in STEP_FINISHED)
            seconds = (
                (run.finished_at - run.started_at).total_seconds()
                if run.started_at and run.finished_at
                else 0.0
            )
            windows[run.id] = (finished, max(seconds, 0.0))
    checks = q.run_check_outcomes(ids)
    workers = q.run_workers(ids)
    spent = {
        run_id: {processor: Cost(*values) for processor, values in by_processor.items()}
        for run_id, by_processor in (q.costs(ids) if costs else {}).items()
    }
    return [
        run_snapshot(
            run,
            outcomes[run.id],
            windows[run.id],
            checks[run.id],
            now,
            alive(run),
            workers[run.id],
            spent.get(run.id, {}),
        )  # fmt: skip
        for run in runs
    ]


def run_snapshot(
    run: Run,
    outcomes: Outcomes,
    window: tuple[int, float],
    checks: Sequence[tuple[str, str, bool]],
    now: dt.datetime,
    alive: bool | None,
    workers: Sequence[tuple[Worker, int, int]] = (),
    costs: dict[str, Cost] | None = None,
) -> RunSnapshot:
    """One run from its task counts (``Queries.outcomes``), finished window, check outcomes and
    workers."""
    status = effective_status(run, alive)
    totals: Counter[str] = Counter()
    per: dict[str, Counter[str]] = {}
    skipped: dict[str, Counter[str]] = {}
    for (processor, task_status, reason), count in outcomes.items():
        totals[task_status] += count
        per.setdefault(processor, Counter())[task_status] += count
        if task_status == TaskStatus.SKIPPED:
            skipped.setdefault(processor, Counter())[reason or "skipped"] += count
    progress = Progress.of(totals)
    tasks_per_hour, eta = rate_and_eta(*window, progress.remaining, status)
    order = [*run.processors, *sorted(set(per) - set(run.processors))]
    failing = [f"{processor}.{name}" for processor, name, passed in checks if not passed]
    end = run.finished_at or (now if status == RunStatus.RUNNING else None)
    processes = [worker_snapshot(worker, done, running, now) for worker, done, running in workers]
    adopted = adopted_snapshot(run, processes)
    commands = run_commands(run.id, status)
    if adopted is not None and adopted.watcher_alive is False and status in ACTIVE_RUN_STATUSES:
        commands["resume"] = f"runbook resume {run.id}"  # starts a new watcher
    return RunSnapshot(
        id=run.id,
        status=status,
        stored_status=run.status,
        processors=list(run.processors),
        start_date=run.start_date,
        end_date=run.end_date,
        alive=alive,
        owner=Owner(host=run.host, pid=run.pid),
        workers=run.workers,
        log_path=run.log_path,
        progress=progress,
        per_processor=[
            ProcessorProgress(
                name=name,
                version=run.versions.get(name),
                progress=Progress.of(per[name]),
                skipped=dict(sorted(skipped.get(name, Counter()).items())),
                cost=(costs or {}).get(name),
            )
            for name in order
            if name in per
        ],
        tasks_per_hour=rate(tasks_per_hour),
        eta_seconds=math.ceil(eta) if eta is not None else None,
        eta_at=iso_utc(now + dt.timedelta(seconds=eta)) if eta is not None else None,
        created_at=iso_utc(run.created_at),
        started_at=iso_utc(run.started_at),
        heartbeat_at=iso_utc(run.heartbeat_at),
        finished_at=iso_utc(run.finished_at),
        wall_seconds=round((end - run.started_at).total_seconds(), 1) if run.started_at and end else None,
        session_id=run.session_id,
        versions=dict(run.versions),
        command_line=run.command_line,
        error=run.error,
        checks=CheckSummary(passed=len(checks) - len(failing), failed=len(failing), failing=failing),
        epoch=run.epoch,
        processes=processes,
        commands=commands,
        origin=run.origin,
        adopted=adopted,
        resume_after=iso_utc(run.resume_after),
        cost=Cost.total(list((costs or {}).values())),
    )


def adopted_snapshot(run: Run, processes: Sequence[WorkerSnapshot]) -> AdoptedSnapshot | None:
    """What an adopted run follows (None for other runs)."""
    info = run.options.get("adopted") if run.origin == RunOrigin.ADOPTED else None
    if not info:
        return None
    following = adopted_pid(run) is not None
    watchers = [p for p in processes if p.kind == WATCHER]
    return AdoptedSnapshot(
        pid=int(info["pid"]),
        log_path=str(info.get("log_path") or ""),
        pattern=str(info.get("pattern") or ""),
        date_format=str(info.get("date_format") or ""),
        reached=info.get("reached"),
        process_started_at=info.get("process_started_at"),
        following=following,
        process_alive=adopted_alive(run) if following and run.host == this_host() else None,
        watcher_alive=any(p.alive for p in watchers) if following else None,
    )


def worker_snapshot(worker: Worker, done: int, running: int, now: dt.datetime) -> WorkerSnapshot:
    return WorkerSnapshot(
        id=worker.id,
        kind=worker.kind,
        host=worker.host,
        pid=worker.pid,
        alive=worker_alive(worker, now),
        tasks_done=done,
        running=running,
        heartbeat_at=iso_utc(worker.heartbeat_at),
        stopped_at=iso_utc(worker.stopped_at),
        note=worker.note,
    )


def run_commands(run_id: int, status: str) -> dict[str, str]:
    """The commands that act on a run in its state (each runs as is from the workspace)."""
    commands = {"show": f"runbook show {run_id}", "logs": f"runbook logs {run_id} --tail 50"}
    if status in ACTIVE_RUN_STATUSES:
        commands.update(
            watch="runbook status", follow=f"runbook logs {run_id} -f", stop=f"runbook stop {run_id}"
        )
    if status in (RunStatus.INTERRUPTED, RunStatus.FAILED, RunStatus.BLOCKED):
        commands["resume"] = f"runbook resume {run_id}"
    return commands


def live_runs(q: Queries) -> list[Run]:
    """Every queued, running and interrupted run (whatever their controller's state)."""
    return q.list_runs(statuses=(*ACTIVE_RUN_STATUSES, RunStatus.INTERRUPTED), limit=None)


def status_runs(q: Queries, *, recent: int = 5) -> list[Run]:
    """What ``runbook status`` lists: live runs, then the ``recent`` latest finished ones, newest first."""
    # Live runs first: a run that ends between the two reads is then in both (its finished row
    # wins), never in neither.
    live = live_runs(q)
    done = q.list_runs(statuses=FINISHED_RUN_STATUSES, limit=recent) if recent else []
    runs = {run.id: run for run in [*live, *done]}
    return sorted(runs.values(), key=lambda run: run.id, reverse=True)


# -- one run in detail -------------------------------------------------------------------------


def task_snapshot(task: Task) -> TaskSnapshot:
    return TaskSnapshot(
        id=task.id,
        processor=task.processor,
        date=task.date,
        end_date=task.end_date,
        status=task.status,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        skip_reason=task.skip_reason,
        code_version=task.code_version,
        exit_code=task.exit_code,
        rows_affected=task.rows_affected,
        started_at=iso_utc(task.started_at),
        finished_at=iso_utc(task.finished_at),
        duration_seconds=round(task.duration_seconds, 3) if task.duration_seconds is not None else None,
        error_tail=task.error_tail,
        worker=task.claimed_by,
        run_id=task.run_id,
        job_id=task.job_id,
        bytes_processed=task.bytes_processed,
        bytes_billed=task.bytes_billed,
        slot_ms=task.slot_ms,
    )


def event_snapshot(event: Event) -> EventSnapshot:
    return EventSnapshot(
        id=event.id,
        at=iso_utc(event.at),
        kind=event.kind,
        run_id=event.run_id,
        processor=event.processor,
        date=event.date,
        message=event.message,
        data=dict(event.data),
    )


def error_summary(error: str | None) -> str:
    """The line that says what went wrong: the last one, unless that is only ``exit code N``."""
    return error_line(error)


def tail(error: str | None, lines: int = ERROR_TAIL_LINES) -> str:
    return "\n".join((error or "").rstrip().splitlines()[-lines:])


def date_ranges(sequence: Sequence[str], selected: Iterable[str]) -> list[DateRange]:
    """Runs of consecutive entries of ``sequence`` (dates in order) that are ``selected``."""
    chosen = selected if isinstance(selected, set | frozenset) else set(selected)
    found: list[DateRange] = []
    if not chosen:
        return found
    start = end = None
    count = 0
    for day in sequence:
        if day in chosen:
            if start is None:
                start, count = day, 0
            end, count = day, count + 1
        elif start is not None:
            found.append(DateRange(start=start, end=end or start, dates=count))
            start = None
    if start is not None:
        found.append(DateRange(start=start, end=end or start, dates=count))
    return found


def failure_groups(
    failed: Sequence[Task], sequences: dict[str, list[str]], *, errors: dict[int, str | None] | None = None
) -> list[FailureGroup]:
    """Failed tasks grouped by processor and error summary; ranges over each processor's dates."""
    groups: dict[tuple[str, str], list[Task]] = {}
    for task in failed:
        error = (errors or {}).get(task.id, task.error_tail)
        groups.setdefault((task.processor, error_summary(error)), []).append(task)
    found = []
    for (processor, summary), tasks in groups.items():
        newest = max(tasks, key=lambda task: task.id)
        days = [day for task in tasks for day in _days(task)]
        found.append(
            FailureGroup(
                processor=processor,
                error=summary,
                tasks=len(tasks),
                ranges=date_ranges(sequences.get(processor) or sorted(days), days),
                runs=sorted({task.run_id for task in tasks}),
                attempts=max(task.attempt for task in tasks),
                exit_code=newest.exit_code,
                error_tail=tail((errors or {}).get(newest.id, newest.error_tail)),
            )
        )
    return sorted(found, key=lambda group: (group.ranges[0].start if group.ranges else "", group.processor))


def blocked_groups(blocked: Sequence[Task], sequences: dict[str, list[str]]) -> list[BlockedGroup]:
    """Blocked tasks grouped by processor and reason (the upstream or gate that blocked them)."""
    groups: dict[tuple[str, str], list[Task]] = {}
    for task in blocked:
        # "upstream a 2024-01-05 failed" for each date: one group, "upstream a failed".
        reason = _DATES.sub("", (task.error_tail or "an upstream date failed").strip().splitlines()[0])
        groups.setdefault((task.processor, reason), []).append(task)
    found = []
    for (processor, reason), tasks in groups.items():
        days = [day for task in tasks for day in _days(task)]
        found.append(
            BlockedGroup(
                processor=processor,
                reason=reason,
                tasks=len(tasks),
                ranges=date_ranges(sequences.get(processor) or sorted(days), days),
            )
        )
    return sorted(found, key=lambda group: (group.ranges[0].start if group.ranges else "", group.processor))


def _days(task: Task) -> list[str]:
    return expand_days(task.date, task.end_date)


def expand_days(date: str, end_date: str | None) -> list[str]:
    """Every ISO date of [date, end_date] (a chunk of ``batch_days`` covers several)."""
    if not end_date or date == end_date:
        return [date]
    first, last = dt.date.fromisoformat(date), dt.date.fromisoformat(end_date)
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def run_detail(
    q: Queries,
    run: Run,
    *,
    with_tasks: bool = False,
    checks: Callable[[int], list[Any]] | None = None,
    now: dt.datetime | None = None,
    alive: Liveness = liveness,
) -> RunDetail:
    """``runbook show RUN_ID``: the run, failures grouped by error, blocked dates, checks, events."""
    (snapshot,) = run_snapshots(q, [run], now=now, alive=alive, costs=True)
    failed = q.tasks(run.id, statuses=[TaskStatus.FAILED])
    blocked = q.tasks(run.id, statuses=[TaskStatus.BLOCKED])
    sequences: dict[str, list[str]] = {}
    if failed or blocked or with_tasks:
        every = q.tasks(run.id)
        for task in every:
            if task.status != TaskStatus.SKIPPED:
                sequences.setdefault(task.processor, []).extend(_days(task))
    return RunDetail(
        run=snapshot,
        failures=failure_groups(failed, sequences),
        blocked=blocked_groups(blocked, sequences),
        checks=checks(run.id) if checks is not None else [],
        events=[event_snapshot(event) for event in q.events(run_id=run.id)],
        tasks=[task_snapshot(task) for task in every] if with_tasks else None,
    )
