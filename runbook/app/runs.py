"""Runs: plan, submit, execute (here or detached), resume and stop.

A run is first recorded (planned tasks, status ``queued``), then executed by a controller, in
the foreground or in a detached process. Whether a run's controller is alive is judged from its
PID on this host and from its heartbeat elsewhere, so ``resume`` never starts a run twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.app.base import Base
from runbook.clock import utcnow
from runbook.engine.liveness import controller_alive, this_host
from runbook.engine.versions import resolve_versions
from runbook.errors import RunBusy, RunConflict, UsageError
from runbook.kinds import ACTIVE_RUN_STATUSES, RunStatus, TaskStatus
from runbook.state.records import Run

if TYPE_CHECKING:
    from runbook.checks.extent import ExtentWarning
    from runbook.engine.controller import Controller, Outcome
    from runbook.engine.planner import Plan
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


@dataclass
class Resumable:
    """What ``runbook resume`` found: runs to resume, and runs whose controller is still alive."""

    todo: list[Run]
    alive: list[Run]


@dataclass
class Resumed:
    """What ``runbook resume`` did: runs continued in the background (with their PIDs), the one
    to continue in this process (``here``, taken at ``epoch``), and the runs left alone because
    their controller is alive."""

    detached: list[tuple[Run, int]]
    here: Run | None
    alive: list[Run]
    epoch: int | None = None


class Runs(Base):
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
        store = self.store
        session = store.open_session()

        def refuse(active: list[Run]) -> None:
            if request.force:
                return
            for other in active:
                overlap = sorted(set(other.processors) & set(plan.processors))
                if (
                    overlap
                    and other.start_date <= plan.end.isoformat()
                    and other.end_date >= plan.start.isoformat()
                    and controller_alive(other)
                ):
                    raise RunConflict(
                        f"run {other.id} (PID {other.pid} on {other.host}, {other.status}) already covers "
                        f"{', '.join(overlap)} {other.start_date}..{other.end_date}: wait for it, "
                        f"`runbook stop {other.id}`, or pass --force"
                    )

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
        store.add_tasks(
            run.id,
            (
                {
                    "processor": task.processor,
                    "date": task.date.isoformat(),
                    "end_date": task.end_date.isoformat(),
                    "seq": task.seq,
                    "status": TaskStatus.PENDING if task.skip_reason is None else TaskStatus.SKIPPED,
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
            store.add_event("extent_warning", warning.message, run_id=run.id, processor=warning.processor)
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

    def controller(self, **kwargs: Any) -> Controller:
        """A controller for this workspace, with checks as gates and ``ready:`` tables consulted."""
        from runbook.engine.controller import Controller

        processors = self.config.processors.values()
        if "gatekeeper" not in kwargs and any(proc.checks for proc in processors):
            from runbook.checks.runner import CheckRunner

            announce = self.observer.message if self.observer is not None else None
            kwargs["gatekeeper"] = CheckRunner(
                self.workspace, self.store, self.warehouse, self.calendar, announce=announce
            )
        if "readiness" not in kwargs and any(proc.ready for proc in processors):
            from runbook.checks.readiness import TableReadiness

            kwargs["readiness"] = TableReadiness(
                self.config, self.warehouse, file=str(self.workspace.config_path)
            )
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

    # -- resuming and stopping ------------------------------------------------------------------

    def resumable(self, run_id: int | None) -> Resumable:
        """What ``runbook resume`` would do.

        Without a run id: every interrupted run and every active run whose controller is gone.
        With one: that run, also when it failed or was blocked (its failed tasks are retried).
        """
        if run_id is not None:
            run = self.get_run(run_id)
            if controller_alive(run):
                return Resumable([], [run])
            done = run.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED)
            return Resumable([] if done else [run], [])
        q = self.reader()
        if q is None:
            return Resumable([], [])
        candidates = q.list_runs(statuses=(*ACTIVE_RUN_STATUSES, RunStatus.INTERRUPTED), limit=None)
        alive = [run for run in candidates if controller_alive(run)]
        return Resumable([run for run in reversed(candidates) if run not in alive], alive)

    def resume(self, run_id: int | None, *, detach: bool) -> Resumed:
        """Take every run to resume (one compare-and-set each), then continue one here or each in
        the background. A run with a live controller is left to it: named ``run_id``, it is
        :class:`~runbook.errors.RunBusy` (exit 5)."""
        found = self.resumable(run_id)
        if run_id is not None and found.alive:
            run = found.alive[0]
            raise RunBusy(
                f"run {run.id} is running: its controller is PID {run.pid} on {run.host} (alive); "
                f"not started twice (`runbook worker --run {run.id}` helps it)"
            )
        taken: list[tuple[Run, int]] = []
        for run in found.todo:
            epoch = self.take_over(run)
            if epoch is not None:
                taken.append((run, epoch))
            elif run_id is not None:
                now = self.store.get_run(run.id) or run
                raise RunBusy(
                    f"run {run.id} was just taken by PID {now.pid} on {now.host} (another `runbook resume`): "
                    "not started twice"
                )
        if not detach and len(taken) == 1:
            return Resumed([], taken[0][0], found.alive, taken[0][1])
        detached = [(run, self.spawn(run.id, epoch=epoch)) for run, epoch in taken]
        return Resumed(detached, None, found.alive)

    def take_over(self, run: Run) -> int | None:
        """Win the run for this process (compare-and-set on its epoch): end its previous owner's
        steps on this host, reopen failed and blocked tasks, re-read the code versions. None when
        another process won it."""
        from runbook.steps.command import kill_process_group

        store = self.store
        for task in store.tasks(run.id, statuses=[TaskStatus.RUNNING]):
            # Steps run in their own process group and may outlive a killed controller.
            if task.pid and run.host == this_host() and task.claimed_by == run.controller_id:
                kill_process_group(task.pid)
        versions = resolve_versions(self.config, list(run.processors), str(self.workspace.root))
        owner = f"{this_host()[:40]}:{os.getpid()}:resume"
        epoch = store.take_run(
            run.id, seen_epoch=run.epoch, owner=owner, pid=os.getpid(), host=this_host(),
            log_path=run.log_path or self.log_path(run.id), now=utcnow(), reopen=True, versions=versions,
        )  # fmt: skip
        if epoch is not None:
            store.add_event(
                "run_resumed", f"taken over (epoch {epoch}); failed and blocked tasks reopened", run_id=run.id
            )
        return epoch

    def stop(self, run_id: int) -> Run:
        """Ask a run to stop: in-flight steps end, the run is interrupted and stays resumable.

        The request is recorded in the store (its processes see it at their next heartbeat, on
        any machine); on this host the controller also gets SIGTERM at once.
        """
        run = self.get_run(run_id)
        if run.status not in ACTIVE_RUN_STATUSES:
            raise UsageError(f"run {run_id} is {run.status}, not running")
        store = self.store
        if not controller_alive(run):
            store.mark_interrupted(run_id, "controller gone")
            return run
        store.request_stop(run_id, utcnow())
        if run.host == this_host() and run.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(run.pid, signal.SIGTERM)
        store.add_event("stop_requested", f"stop requested for PID {run.pid} on {run.host}", run_id=run_id)
        return run


class _NothingBuilt:
    """The planner's view of a workspace without a state store: nothing is built yet."""

    def succeeded_ranges(self, processor: str, start: str, end: str) -> list[tuple[str, str, str | None]]:
        return []


__all__ = ["Planned", "Resumable", "Resumed", "RunRequest", "Runs"]
