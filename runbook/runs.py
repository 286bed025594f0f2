"""Starting, resuming and stopping runs: the layer between the CLI and the controller.

A run is first recorded (planned tasks, status ``queued``), then executed by a controller, in
the foreground or in a detached process. Whether a run's controller is alive is judged from its
PID on this host and from its heartbeat elsewhere, so ``resume`` never starts a run twice.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.calendar import Calendar
from runbook.config import RunbookConfig
from runbook.controller import Controller, Outcome
from runbook.errors import RunConflict, StateError, UsageError
from runbook.executors import CommandExecutor, Executor, PythonExecutor, SqlExecutor, kill_process_group
from runbook.hooks import Observer
from runbook.liveness import controller_alive
from runbook.planner import Plan, build_plan, resolve_versions
from runbook.redact import Redactor
from runbook.state.models import ACTIVE_RUN_STATUSES, Run
from runbook.state.store import Store
from runbook.workspace import Workspace

if TYPE_CHECKING:
    from runbook.extent import ExtentWarning


@dataclass
class RunRequest:
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


def check_request(config: RunbookConfig, request: RunRequest) -> tuple[dt.date, dt.date]:
    """The request's date range, after checking dates and processor names against the config.

    Needs no state store, so the CLI calls it before opening one: bad input never creates or
    touches the state DB.
    """
    start = request.start or config.calendar.start
    end = request.end or config.calendar.end
    if start is None or end is None:
        raise UsageError("no date range: pass --start and --end (or set calendar.start/end in runbook.yaml)")
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    unknown = [name for name in request.processors if name not in config.processors]
    if unknown:
        raise UsageError(f"unknown processor {unknown[0]!r} (known: {', '.join(config.processors)})")
    return start, end


class Runner:
    """Plans, records, executes, resumes and stops runs of one workspace."""

    def __init__(self, workspace: Workspace, store: Store, *, observer: Observer | None = None) -> None:
        self.workspace = workspace
        self.config = workspace.config
        self.store = store
        self.observer = observer
        self.redactor = Redactor(workspace.secret_values())
        self._warehouse: Any = None
        self._warehouse_lock = threading.Lock()

    # -- pieces ----------------------------------------------------------------------------------

    def warehouse(self) -> Any:
        """The workspace's warehouse, opened once on first use (shared by worker threads)."""
        with self._warehouse_lock:
            if self._warehouse is None:
                from runbook.warehouse import open_warehouse

                self._warehouse = open_warehouse(
                    self.config.warehouse, self.workspace.root, self.workspace.environ
                )
            return self._warehouse

    def calendar(self, start: dt.date, end: dt.date) -> Calendar:
        active = None
        if self.config.calendar.query:
            rows = self.warehouse().query(self.config.calendar.query, {"start": start, "end": end})
            from runbook.extent import to_date

            found = (to_date(next(iter(row.values()))) for row in rows)
            active = [day for day in found if day is not None]
        return Calendar(self.config.calendar, active)

    def date_range(self, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
        return check_request(self.config, RunRequest(processors=[], start=start, end=end))

    def plan(self, request: RunRequest) -> Plan:
        start, end = check_request(self.config, request)
        names = request.processors or list(self.config.processors)
        versions = resolve_versions(self.config, names, str(self.workspace.root))
        return build_plan(
            self.config, self.store, self.calendar(start, end), names, start, end, versions,
            resume=request.resume, only_gaps=request.only_gaps, only_stale=request.only_stale,
        )  # fmt: skip

    def executor_factory(self) -> Callable[[str], Executor]:
        cache: dict[str, Executor] = {}
        lock = threading.Lock()
        root = self.workspace.root
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))

        def make(name: str) -> Executor:
            with lock:
                if name not in cache:
                    cache[name] = self._make_executor(name)
                return cache[name]

        return make

    def _make_executor(self, name: str) -> Executor:
        proc = self.config.processors[name]
        cwd = self.workspace.resolve(proc.cwd) if proc.cwd else self.workspace.root
        env = {**self.workspace.environ}
        for key, value in proc.env.items():
            env[key] = self.workspace.expand_env(value, f"processors.{name}.env.{key}")
        if proc.command is not None:
            return CommandExecutor(proc, cwd, env)
        if proc.python is not None:
            return PythonExecutor(proc.python, cwd)
        if proc.http is not None:
            from runbook.http_step import HttpExecutor

            return HttpExecutor(proc.http, self.workspace, self.redactor)
        sql = (
            proc.sql
            if proc.sql is not None
            else self.workspace.resolve(proc.sql_file or "").read_text("utf-8")
        )
        return SqlExecutor(sql, self.warehouse)

    def controller(self, **kwargs: Any) -> Controller:
        """A controller for this workspace, with checks as gates and ``ready:`` tables consulted."""
        processors = self.config.processors.values()
        if "gatekeeper" not in kwargs and any(proc.checks for proc in processors):
            from runbook.checks import CheckRunner

            announce = self.observer.message if self.observer is not None else None
            kwargs["gatekeeper"] = CheckRunner(
                self.workspace, self.store, self.warehouse, self.calendar, announce=announce
            )
        if "readiness" not in kwargs and any(proc.ready for proc in processors):
            from runbook.readiness import TableReadiness

            kwargs["readiness"] = TableReadiness(
                self.config, self.warehouse, file=str(self.workspace.config_path)
            )
        return Controller(
            self.workspace, self.store, self.executor_factory(), observer=self.observer,
            redactor=self.redactor, **kwargs,
        )  # fmt: skip

    def extent_warnings(self, plan: Plan) -> list[ExtentWarning]:
        """Warnings for processors whose source data (``extent:``) reaches beyond the plan's range."""
        from runbook.extent import extent_warnings

        return extent_warnings(
            self.config, plan.processors, plan.start, plan.end, self.warehouse, self.calendar
        )

    # -- runs ------------------------------------------------------------------------------------

    def conflicts(self, processors: list[str], start: dt.date, end: dt.date) -> list[Run]:
        """Active runs with a live controller over overlapping processors and dates."""
        found = []
        for run in self.store.active_runs():
            if not controller_alive(run):
                continue
            if (
                set(run.processors) & set(processors)
                and run.start_date <= end.isoformat()
                and (run.end_date >= start.isoformat())
            ):
                found.append(run)
        return found

    def submit(self, request: RunRequest, plan: Plan | None = None) -> Run:
        """Record a run and its planned tasks; refuse an overlap with a live run unless forced."""
        plan = plan or self.plan(request)
        if not request.force:
            for other in self.conflicts(plan.processors, plan.start, plan.end):
                raise RunConflict(
                    f"run {other.id} (PID {other.pid} on {other.host}, {other.status}) already covers "
                    f"{', '.join(sorted(set(other.processors) & set(plan.processors)))} "
                    f"{other.start_date}..{other.end_date}: wait for it, `runbook stop {other.id}`, or pass --force"
                )
        session = self.store.open_session()
        run = self.store.create_run(
            processors=plan.processors,
            start_date=plan.start.isoformat(),
            end_date=plan.end.isoformat(),
            options=request.options,
            versions=plan.versions,
            workers=request.workers or self.config.workers,
            command_line=self.redactor(request.command_line),
            config_path=str(self.workspace.config_path),
            session_id=session.id if session else None,
        )
        assert run.id is not None
        log_path = self.log_path(run.id)
        self.store.update_run(run.id, log_path=log_path)
        run.log_path = log_path
        self.store.add_tasks(
            run.id,
            (
                {
                    "processor": task.processor,
                    "date": task.date.isoformat(),
                    "end_date": task.end_date.isoformat(),
                    "seq": task.seq,
                    "status": "pending" if task.runnable else "skipped",
                    "skip_reason": task.skip_reason,
                    "code_version": plan.versions[task.processor] if task.runnable else None,
                    "max_attempts": self.config.processors[task.processor].retries.attempts + 1,
                }
                for task in plan.tasks
            ),
        )
        self.store.add_event(
            "run_created", request.command_line and self.redactor(request.command_line), run_id=run.id
        )
        return run

    def log_path(self, run_id: int) -> str:
        return str(Path("state") / "logs" / f"run-{run_id}.log")

    def execute(self, run_id: int, **controller_kwargs: Any) -> Outcome:
        run = self.store.get_run(run_id)
        if run is None:
            raise StateError(f"run {run_id} not found")
        controller = self.controller(**controller_kwargs)
        controller.install_signal_handlers()
        return controller.execute(run_id, run.log_path or self.log_path(run_id))

    def spawn(self, run_id: int) -> int:
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
        with open(log, "ab") as out:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                cwd=self.workspace.root, env=dict(self.workspace.environ),
            )  # fmt: skip
        self.store.update_run(run_id, pid=child.pid, host=socket.gethostname())
        return child.pid

    def resumable(self, run_id: int | None) -> tuple[list[Run], list[Run]]:
        """(runs to resume, runs whose controller is still alive) for ``runbook resume``.

        Without a run id: every interrupted run and every active run whose controller is gone.
        With one: that run, also when it failed or was blocked (its failed tasks are retried).
        """
        if run_id is not None:
            run = self.store.get_run(run_id)
            if run is None:
                raise UsageError(f"run {run_id} not found (see `runbook status`)")
            if controller_alive(run):
                return [], [run]
            return ([] if run.status in ("succeeded", "cancelled") else [run]), []
        candidates = self.store.list_runs(statuses=(*ACTIVE_RUN_STATUSES, "interrupted"), limit=None)
        alive = [run for run in candidates if controller_alive(run)]
        return [run for run in reversed(candidates) if run not in alive], alive

    def prepare_resume(self, run: Run) -> None:
        """Mark a dead run interrupted, end orphaned steps, reopen failed and blocked tasks."""
        assert run.id is not None
        if run.status in ACTIVE_RUN_STATUSES:
            returned = self.store.mark_interrupted(run.id, "controller gone (PID dead or heartbeat stale)")
            for task in returned:
                # Steps run in their own process group and outlive a killed controller.
                if task.pid and run.host == socket.gethostname():
                    kill_process_group(task.pid)
            self.store.add_event(
                "run_interrupted", f"controller of run {run.id} found dead; {len(returned)} task(s) returned",
                run_id=run.id,
            )  # fmt: skip
        reopened = self.store.reopen_tasks(run.id)
        versions = resolve_versions(self.config, list(run.processors), str(self.workspace.root))
        self.store.update_run(run.id, status="interrupted", versions=versions)
        self.store.add_event("run_resumed", f"{reopened} failed/blocked task(s) reopened", run_id=run.id)

    def stop(self, run_id: int) -> Run:
        """Ask a run's controller to stop (SIGTERM): in-flight steps end, the run stays resumable."""
        run = self.store.get_run(run_id)
        if run is None:
            raise UsageError(f"run {run_id} not found (see `runbook status`)")
        if run.status not in ACTIVE_RUN_STATUSES:
            raise UsageError(f"run {run_id} is {run.status}, not running")
        if run.host != socket.gethostname():
            raise UsageError(f"run {run_id} runs on host {run.host}: stop it there")
        if not controller_alive(run):
            self.store.mark_interrupted(run_id, "controller gone")
            return run
        assert run.pid is not None
        os.kill(run.pid, signal.SIGTERM)
        self.store.add_event("stop_requested", f"SIGTERM sent to PID {run.pid}", run_id=run_id)
        return run
