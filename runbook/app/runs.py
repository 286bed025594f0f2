"""Runs: plan, submit, and execute (here or detached); resuming and stopping are in ``resume``.

A run is first recorded (planned tasks, status ``queued``), then executed by a controller, in
the foreground or in a detached process.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.app.notify import Notifications
from runbook.engine.liveness import controller_alive, this_host
from runbook.engine.versions import resolve_versions
from runbook.errors import RunConflict
from runbook.kinds import TaskStatus
from runbook.state.records import Run

TIB = 1024**4
MIN_BILLED_BYTES = 10 * 1024**2  # BigQuery bills a query at least 10 MiB

if TYPE_CHECKING:
    from runbook.checks.extent import ExtentWarning
    from runbook.engine.controller import Controller, Outcome
    from runbook.engine.planner import Plan
    from runbook.engine.seams import Gatekeeper
    from runbook.snapshots.model import EstimateSnapshot
    from runbook.steps import Executor


@dataclass
class RunRequest:
    """What to run: processors (all when empty), a date range, and how."""

    processors: list[str]
    start: dt.date | None = None
    end: dt.date | None = None
    workers: int | None = None
    resume: bool = True
    force: bool = False
    only_gaps: bool = False
    only_stale: bool = False
    command_line: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Planned:
    """A plan and the warnings about it (source data beyond the range)."""

    plan: Plan
    warnings: list[ExtentWarning]


class Runs(Notifications):
    """The run use cases (mixed into :class:`runbook.app.App`)."""

    def check_request(self, request: RunRequest) -> tuple[dt.date, dt.date]:
        """The request's range, its processors and its step templates checked, without a state store."""
        from runbook.engine.planner import resolve_range
        from runbook.steps.templating import check_templates

        first, last = resolve_range(self.config, request.processors, request.start, request.end)
        check_templates(self.config, str(self.workspace.config_path))
        return first, last

    def plan(self, request: RunRequest) -> Planned:
        """Every date of the request with its action or skip reason, and the extent warnings."""
        from runbook.engine.planner import build_plan

        start, end = self.check_request(request)
        names = request.processors or list(self.config.processors)
        versions = resolve_versions(self.config, names, str(self.workspace.root))
        q = self.reader()
        built = q if q is not None else _NothingBuilt()
        plan = build_plan(
            self.config, built, self.calendar(start, end), names, start, end, versions,
            resume=request.resume, only_gaps=request.only_gaps, only_stale=request.only_stale,
        )  # fmt: skip
        return Planned(plan, self.extent_warnings(plan))

    def estimate(self, plan: Plan) -> list[EstimateSnapshot]:
        """Dry-run each SQL processor's step for the first and last planned task of ``plan`` and
        scale to every planned task: bytes and dollars (``warehouse.price_per_tib``). Nothing runs
        and nothing is billed; a processor that cannot be estimated says why."""
        from runbook.errors import RunbookError
        from runbook.snapshots.model import EstimateSnapshot

        warehouse_config = self.config.warehouse
        price = warehouse_config.price_per_tib
        planned: dict[str, list[tuple[dt.date, dt.date]]] = {}
        for task in plan.stream():
            if task.runnable:
                planned.setdefault(task.processor, []).append((task.date, task.end_date))
        found: list[EstimateSnapshot] = []
        for name in plan.processors:
            proc = self.config.processors[name]
            if proc.step_kind != "sql":
                continue
            spans = planned.get(name, [])
            if not spans:
                found.append(EstimateSnapshot(name, 0, None, None, None, None, 0, 0.0, price))
                continue
            ends = [spans[0], spans[-1]] if len(spans) > 1 else [spans[0]]
            sql = (
                proc.sql
                if proc.sql is not None
                else self.workspace.resolve(proc.sql_file or "").read_text("utf-8")
            )
            scanned: list[int] = []
            error = None
            try:
                for start, end in ends:
                    params = {"date": start, "start": start, "end": end}
                    bytes_ = self.warehouse().estimate(sql, params)
                    if bytes_ is None:
                        error = f"the {warehouse_config.kind} warehouse cannot estimate (estimates are BigQuery dry runs)"
                        break
                    scanned.append(bytes_)
            except RunbookError as exc:
                error = str(exc)
            first_day, last_day = spans[0][0].isoformat(), spans[-1][0].isoformat()
            if error is not None:
                found.append(EstimateSnapshot(name, len(spans), first_day, last_day, None, None, None, None, price,
                                              error=error))  # fmt: skip
                continue
            per_task = sum(scanned) / len(scanned)
            billed = max(per_task, MIN_BILLED_BYTES) if per_task > 0 else 0.0
            limit = warehouse_config.maximum_bytes_billed
            warning = (
                f"a step would process {max(scanned)} bytes, over maximum_bytes_billed {limit}: BigQuery refuses it"
                if limit is not None and max(scanned) > limit
                else None
            )
            found.append(
                EstimateSnapshot(
                    name,
                    len(spans),
                    first_day,
                    last_day,
                    scanned[0],
                    scanned[-1],
                    round(per_task * len(spans)),
                    round(billed * len(spans) / TIB * price, 2),
                    price,
                    warning=warning,
                )  # fmt: skip
            )
        return found

    def extent_warnings(self, plan: Plan) -> list[ExtentWarning]:
        """Warnings for processors whose source data (``extent:``) reaches beyond the plan's range."""
        if not any(self.config.processors[name].extent for name in plan.processors):
            return []
        from runbook.checks.extent import extent_warnings

        return extent_warnings(
            self.config, plan.processors, plan.start, plan.end, self.warehouse, self.calendar
        )

    # -- recording ------------------------------------------------------------------------------

    def submit(self, request: RunRequest, planned: Planned) -> Run:
        """Record a run, its planned tasks and what waits for what; refuse an overlap with a live run
        unless forced (the check and the creation are one locked transaction)."""
        plan = planned.plan
        self.notifier()  # a webhook whose ${VAR} is unset stops the run before it is recorded
        store = self.store
        session = store.open_session()
        refuse = overlap_guard(plan.processors, plan.start, plan.end, force=request.force)
        run = store.admit_run(
            refuse,
            processors=plan.processors,
            start_date=plan.start.isoformat(),
            end_date=plan.end.isoformat(),
            options=request.options,
            versions=plan.versions,
            workers=request.workers or self.config.workers,
            command_line=self.redactor(request.command_line),
            config_path=str(self.workspace.config_path),
            session_id=session.id if session else None,
            pid=os.getpid(),
            host=this_host(),
        )
        log_path = self.log_path(run.id)
        store.update_run(run.id, log_path=log_path)
        run.log_path = log_path
        processors = self.config.processors
        # A pending task is recorded waiting for one dependency (the commonest count) until
        # record_graph counts its waits: that count writes only the tasks whose number differs,
        # not nearly every row of a big run (975,000 of 1,000,000 in a chain: 13 s).
        store.add_tasks(
            run.id,
            (
                {
                    "processor": task.processor,
                    "date": task.date.isoformat(),
                    "end_date": task.end_date.isoformat(),
                    "seq": task.seq,
                    "status": TaskStatus.PENDING if task.skip_reason is None else TaskStatus.SKIPPED,
                    "waits": 1 if task.skip_reason is None else 0,
                    "skip_reason": task.skip_reason,
                    "code_version": plan.versions[task.processor] if task.skip_reason is None else None,
                    "max_attempts": processors[task.processor].retries.tries,
                    "pool": processors[task.processor].pool,
                }
                for task in plan.stream()
            ),
        )
        self.record_graph(run.id)
        store.add_event(
            "run_created", request.command_line and self.redactor(request.command_line), run_id=run.id
        )
        for warning in planned.warnings:
            store.add_event(
                "extent_warning",
                warning.message,
                run_id=run.id,
                processor=warning.processor,
                data=warning.data(),
            )
        return run

    def record_graph(self, run_id: int) -> None:
        """Record what waits for what among the run's runnable tasks (and the gates of checks)."""
        from runbook.engine.graph import links

        run = self.get_run(run_id)
        processors = [name for name in run.processors if name in self.config.processors]
        self.store.add_graph(run_id, links(self.config, processors, self.store.task_spans(run_id)))

    def log_path(self, run_id: int) -> str:
        """Where run ``run_id`` logs, relative to the workspace."""
        return str(self.workspace.logs_dir.relative_to(self.workspace.root) / f"run-{run_id}.log")

    # -- executing ------------------------------------------------------------------------------

    def executor_factory(self) -> Callable[[str], Executor]:
        """Executors by processor name, each built once (threads share them)."""
        from runbook.steps import make_executor

        cache: dict[str, Executor] = {}
        lock = threading.Lock()
        root = str(self.workspace.root)
        if root not in sys.path:
            sys.path.insert(0, root)

        def make(name: str) -> Executor:
            with lock:
                if name not in cache:
                    cache[name] = make_executor(self.workspace, name, self.warehouse, self.redactor)
                return cache[name]

        return make

    def gatekeeper(self) -> Gatekeeper | None:
        """What runs the processors' checks as gates (None when no processor has checks)."""
        if not any(proc.checks for proc in self.config.processors.values()):
            return None
        from runbook.checks.runner import CheckRunner

        announce = self.observer.message if self.observer is not None else None
        return CheckRunner(self.workspace, self.store, self.warehouse, self.calendar, announce=announce)

    def controller(self, **kwargs: Any) -> Controller:
        """A controller for this workspace, with checks as gates and ``ready:`` tables consulted."""
        from runbook.engine.controller import Controller

        processors = self.config.processors.values()
        if "gatekeeper" not in kwargs:
            kwargs["gatekeeper"] = self.gatekeeper()
        if "readiness" not in kwargs and any(proc.ready for proc in processors):
            from runbook.checks.readiness import TableReadiness

            kwargs["readiness"] = TableReadiness(
                self.config, self.warehouse, file=str(self.workspace.config_path)
            )
        if "notices" not in kwargs:
            kwargs["notices"] = self.notifier()
        return Controller(
            self.workspace, self.store, self.executor_factory(), observer=self.observer,
            redactor=self.redactor, **kwargs,
        )  # fmt: skip

    def execute(self, run_id: int, *, seen_epoch: int | None = None, **controller_kwargs: Any) -> Outcome:
        """Execute a recorded run in this process until it ends or is stopped.

        Without ``seen_epoch`` the run is taken from whoever held it (the caller has checked that
        its controller is gone); with it, only if nobody took it since it was handed over.
        """
        run = self.get_run(run_id)
        if not self.store.has_graph(run_id):
            self.record_graph(run_id)  # a run recorded by a runbook from before the work queue
        controller = self.controller(**controller_kwargs)
        controller.install_signal_handlers()
        try:
            return controller.execute(run_id, run.log_path or self.log_path(run_id), seen_epoch=seen_epoch)
        finally:
            controller.restore_signal_handlers()

    def spawn(self, run_id: int, *, epoch: int | None = None) -> int:
        """Execute the run in a new process detached from this terminal; return its PID."""
        log = self.workspace.resolve(self.log_path(run_id))
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "runbook",
            "--config",
            str(self.workspace.config_path),
            "_execute",
            str(run_id),
        ]
        if epoch is not None:
            argv += ["--epoch", str(epoch)]
        with open(log, "ab") as out:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                cwd=self.workspace.root, env=dict(self.workspace.environ),
            )  # fmt: skip
        self.store.update_run(run_id, pid=child.pid, host=this_host())
        return child.pid

    def spawn_watcher(self, run_id: int, *, epoch: int) -> int:
        """Follow an adopted run in a process of its own, as ``nohup ... &`` would start it: a new
        session, nothing on its stdin, its output appended to ``run-N.watch.log``, and the child of
        no runbook process (it outlives this one and the terminal); return its PID."""
        log = self.workspace.resolve(self.log_path(run_id)).with_suffix(".watch.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "runbook", "--config", str(self.workspace.config_path), "_follow", str(run_id),
                "--epoch", str(epoch)]  # fmt: skip
        line = f"{shlex.join(argv)} </dev/null >>{shlex.quote(str(log))} 2>&1 & echo $!"
        started = subprocess.run(
            ["/bin/sh", "-c", line], capture_output=True, text=True, start_new_session=True, check=True,
            cwd=self.workspace.root, env=dict(self.workspace.environ),
        )  # fmt: skip
        return int(started.stdout.strip())


def overlap_guard(
    processors: list[str], start: dt.date, end: dt.date, *, force: bool = False
) -> Callable[[list[Run]], None]:
    """What refuses a new run over ``processors`` and [start, end] when a live run covers some of
    it (checked with the new run's creation in one locked transaction), unless ``force``."""

    def refuse(active: list[Run]) -> None:
        if force:
            return
        for other in active:
            overlap = sorted(set(other.processors) & set(processors))
            if (
                overlap
                and other.start_date <= end.isoformat()
                and other.end_date >= start.isoformat()
                and controller_alive(other)
            ):
                raise RunConflict(
                    f"run {other.id} (PID {other.pid} on {other.host}, {other.status}) already covers "
                    f"{', '.join(overlap)} {other.start_date}..{other.end_date}: wait for it, "
                    f"`runbook stop {other.id}`, or pass --force"
                )

    return refuse


class _NothingBuilt:
    """The planner's view of a workspace without a state store: nothing is built yet."""

    def succeeded_ranges(self, processor: str, start: str, end: str) -> list[tuple[str, str, str | None]]:
        return []


__all__ = ["Planned", "RunRequest", "Runs", "overlap_guard"]
