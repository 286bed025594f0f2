"""The controller: runs the tasks of one run with bounded parallelism, pools, retries and gates.

The controller's main thread is the only one that writes to the state store; worker threads only
run steps and report back through a queue. Scheduling is in memory (per-processor ready heaps,
dependency counters), so the cost per task does not grow with the size of the run.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runbook.clock import utcnow
from runbook.engine.graph import Gate
from runbook.engine.schedule import Node, Schedule
from runbook.engine.seams import Gatekeeper, Observer, QuietObserver, Readiness
from runbook.errors import StateError
from runbook.kinds import RunStatus, SkipReason, TaskStatus
from runbook.runlog import RunLog
from runbook.state.store import Store
from runbook.steps import Executor, StepContext, StepResult
from runbook.steps.command import kill_process_group
from runbook.workspace import Workspace

HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 60.0
# The longest the main loop sleeps without looking at a stop request (a signal does not wake it).
STOP_POLL_SECONDS = 0.5


@dataclass
class _RunState:
    failed: bool = False
    blocked_by_gate: bool = False


@dataclass(frozen=True)
class _Started:
    """A worker started a step process: the main thread records its PID (for resume to end it)."""

    task_id: int
    pid: int


@dataclass
class Outcome:
    run_id: int
    status: str
    counts: Counter[str]
    message: str = ""


class Controller:
    """Executes runs recorded in the store. One controller process executes one run at a time."""

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        executors: Callable[[str], Executor],
        *,
        observer: Observer | None = None,
        gatekeeper: Gatekeeper | None = None,
        readiness: Readiness | None = None,
        redactor: Callable[[str], str] = lambda text: text,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.workspace = workspace
        self.config = workspace.config
        self.store = store
        self.executors = executors
        self.observer = observer or QuietObserver()
        self.gatekeeper = gatekeeper
        self.readiness = readiness
        self.redact = redactor
        self.heartbeat_seconds = heartbeat_seconds
        self.controller_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop_reason: str | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._results: queue.Queue[tuple[int | Gate | _Started, Any]] = queue.Queue()

    # -- signals ---------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def install_signal_handlers(self) -> None:
        """Turn SIGTERM, SIGINT and SIGHUP into a graceful stop (see :meth:`restore_signal_handlers`)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: Any) -> None:
            if self._stop_reason is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request_stop(f"received {signal.Signals(signum).name}")

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def restore_signal_handlers(self) -> None:
        """Put back the handlers :meth:`install_signal_handlers` replaced (in-process callers)."""
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._previous_handlers.clear()

    # -- the run loop ----------------------------------------------------------------------------

    def execute(self, run_id: int, log_path: str) -> Outcome:
        """Take the run, run its unfinished tasks to the end (or a stop), record the outcome."""
        store = self.store
        if not store.take_run(
            run_id,
            controller_id=self.controller_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            log_path=log_path,
        ):
            run = store.get_run(run_id)
            state = f"{run.status}, PID {run.pid} on {run.host}" if run else "not found"
            raise StateError(f"run {run_id} cannot be taken by this controller ({state})")
        run = store.get_run(run_id)
        assert run is not None
        log = RunLog(self.workspace.resolve(log_path), self.redact)  # type: ignore[arg-type]
        store.add_event("run_started", f"controller {self.controller_id} took the run", run_id=run_id)
        log.event(f"run {run_id} started by {self.controller_id} (pid {os.getpid()})")
        try:
            return self._loop(run_id, run.start_date, run.end_date, run.workers, run.versions, log)
        finally:
            log.close()

    def _loop(
        self, run_id: int, start: str, end: str, workers: int, versions: dict[str, str], log: RunLog
    ) -> Outcome:
        store = self.store
        rows = store.tasks(run_id)
        keeper = self.gatekeeper
        names = {t.processor for t in rows}
        gated = {name for name in names if keeper is not None and keeper.has_checks(name)}
        blocking = {name for name in gated if keeper is not None and keeper.blocking(name)}
        schedule = Schedule(self.config, rows, gated, blocking)
        state = _RunState(failed=any(t.status == TaskStatus.FAILED for t in rows))

        def settle(item: int | Gate, ok: bool, reason: str = "", skipped: bool = False) -> None:
            """Apply what finishing ``item`` changed: persist blocked/skipped tasks, start gates."""
            settled = schedule.settle(item, ok, skipped=skipped)
            if settled.marked:
                # A date skipped for missing upstream data is skipped downstream too, not blocked.
                skip_reason = SkipReason.UPSTREAM_MISSING if settled.status == TaskStatus.SKIPPED else None
                store.set_tasks_status(settled.marked, settled.status, reason, skip_reason=skip_reason)
                for tid in settled.marked:
                    self.observer.task_finished(schedule.nodes[tid].task.processor, settled.status)
            for gate in settled.gates:
                threading.Thread(
                    target=self._gate_worker, args=(gate, run_id, start, end), daemon=True
                ).start()

        for task in rows:
            assert task.id is not None
            if task.status in (TaskStatus.PENDING, TaskStatus.RUNNING):
                task.status = TaskStatus.PENDING
                if schedule.nodes[task.id].waits == 0:
                    schedule.push_ready(task.id)
        # Dependencies already settled by tasks that finished before (e.g. on resume).
        for task in rows:
            assert task.id is not None
            if task.id in schedule.nodes and task.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
                reason = f"upstream {task.processor} {task.date} {task.status}"
                settle(
                    task.id,
                    task.status == TaskStatus.SUCCEEDED,
                    reason,
                    skipped=task.status == TaskStatus.SKIPPED,
                )

        by_processor: dict[str, Counter[str]] = {}
        for (name, status, _), count in store.outcomes([run_id])[run_id].items():
            by_processor.setdefault(name, Counter())[status] += count
        self.observer.started(run_id, {n: by_processor[n] for n in self.config.order() if n in by_processor})
        work: queue.Queue[Node | None] = queue.Queue()
        threads = [
            threading.Thread(target=self._worker, args=(work, run_id, log), daemon=True)
            for _ in range(workers)
        ]
        for thread in threads:
            thread.start()
        next_beat = 0.0
        while True:
            now = utcnow()
            if time.monotonic() >= next_beat:
                store.heartbeat(run_id, self.controller_id, now + dt.timedelta(seconds=LEASE_SECONDS))
                next_beat = time.monotonic() + self.heartbeat_seconds
            if self._stop_reason is not None:
                break
            schedule.release_due(now)
            while len(schedule.running) < workers:
                node = schedule.pick()
                if node is None:
                    break
                assert node.task.id is not None
                lease = now + dt.timedelta(seconds=LEASE_SECONDS)
                version = versions.get(node.task.processor)
                if not store.claim_task(node.task.id, self.controller_id, lease, version, now=now):
                    continue  # another controller took it
                schedule.start(node, now)
                work.put(node)
            if schedule.idle():
                break
            timeout = min(self.heartbeat_seconds, STOP_POLL_SECONDS)
            retry_in = schedule.seconds_to_next_retry(utcnow())
            if retry_in is not None:
                timeout = min(timeout, retry_in)
            try:
                item, payload = self._results.get(timeout=max(timeout, 0.01))
            except queue.Empty:
                continue
            while True:
                self._handle(run_id, item, payload, schedule, state, settle, log)
                try:
                    item, payload = self._results.get_nowait()
                except queue.Empty:
                    break

        if self._stop_reason is not None:
            return self._interrupt(run_id, schedule, work, threads, log)
        for _ in threads:
            work.put(None)
        status = (
            RunStatus.FAILED
            if state.failed
            else RunStatus.BLOCKED
            if state.blocked_by_gate
            else RunStatus.SUCCEEDED
        )
        counts = store.progress([run_id])[run_id]  # a GROUP BY, not every task row again
        store.finish_run(run_id, status)
        store.add_event(f"run_{status}", _summary(counts), run_id=run_id, data=dict(counts))
        log.event(f"run {run_id} {status}: {_summary(counts)}")
        self.observer.finished()
        return Outcome(run_id, status, counts)

    def _handle(
        self,
        run_id: int,
        item: int | Gate | _Started,
        payload: Any,
        schedule: Schedule,
        state: _RunState,
        settle: Callable[..., None],
        log: RunLog,
    ) -> None:
        """Apply one message from a worker or a gate thread."""
        if isinstance(item, _Started):
            self.store.set_task_pid(item.task_id, item.pid)
        elif isinstance(item, Gate):
            schedule.active_gates.discard(item)
            failures: list[str] = payload
            if failures:
                state.blocked_by_gate = True
                message = f"blocking check failed on {item.processor}: {failures[0]}"
                self.store.add_event("gate_blocked", message, run_id=run_id, processor=item.processor)
                log.event(message)
                self.observer.message(message)
            settle(item, not failures, f"blocked by gate: {failures[0]}" if failures else "")
        else:
            node = schedule.nodes[item]
            schedule.stop(node)
            if self._finish(run_id, node, payload, log):
                schedule.push_ready(item)
                return
            status = node.task.status
            state.failed = state.failed or status == TaskStatus.FAILED
            if status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED):
                reason = f"upstream {node.task.processor} {node.task.date} {status}"
                settle(item, status == TaskStatus.SUCCEEDED, reason, skipped=status == TaskStatus.SKIPPED)

    def _finish(self, run_id: int, node: Node, result: StepResult, log: RunLog) -> bool:
        """Record an attempt's result; True when the task goes back to wait for a retry."""
        task = node.task
        assert task.id is not None
        proc = self.config.processors[task.processor]
        now = utcnow()
        if result.cancelled:
            return False
        error = self.redact(result.error) if result.error else None
        span = task.date if task.date == task.end_date else f"{task.date}..{task.end_date}"
        if result.skip_reason:
            task.status = TaskStatus.SKIPPED
            self.store.set_tasks_status([task.id], TaskStatus.SKIPPED, error, skip_reason=result.skip_reason)
            self.store.add_event(
                "task_skipped",
                f"{task.processor} {span}: {error}",
                run_id=run_id,
                processor=task.processor,
                date=task.date,
            )
            self.observer.task_finished(task.processor, TaskStatus.SKIPPED)
            return False
        if result.ok:
            task.status = TaskStatus.SUCCEEDED
            self.store.finish_task(
                task.id,
                TaskStatus.SUCCEEDED,
                started_at=node.started,
                exit_code=result.exit_code,
                rows_affected=result.rows_affected,
                now=now,
            )
            self.observer.task_finished(task.processor, TaskStatus.SUCCEEDED)
            return False
        if task.attempt < task.max_attempts:
            wait = proc.retries.wait_before(task.attempt)
            retry_at = now + dt.timedelta(seconds=wait)
            task.status = TaskStatus.PENDING
            task.not_before = retry_at
            self.store.finish_task(
                task.id,
                TaskStatus.FAILED,
                started_at=node.started,
                exit_code=result.exit_code,
                error=error,
                retry_at=retry_at,
                now=now,
            )
            last = (error or "").strip().splitlines()[-1:] or [""]
            message = (
                f"{task.processor} {span} attempt {task.attempt} failed ({last[0][:120]}); retry in {wait:g}s"
            )
            self.store.add_event(
                "task_retry", message, run_id=run_id, processor=task.processor, date=task.date
            )
            log.event(message)
            return True
        task.status = TaskStatus.FAILED
        self.store.finish_task(
            task.id,
            TaskStatus.FAILED,
            started_at=node.started,
            exit_code=result.exit_code,
            error=error,
            now=now,
        )
        last = (error or "").strip().splitlines()[-1:] or [""]
        message = f"{task.processor} {span} failed after {task.attempt} attempt(s): {last[0][:200]}"
        self.store.add_event("task_failed", message, run_id=run_id, processor=task.processor, date=task.date)
        log.event(message)
        self.observer.task_finished(task.processor, TaskStatus.FAILED)
        return False

    def _worker(self, work: queue.Queue[Node | None], run_id: int, log: RunLog) -> None:
        while True:
            node = work.get()
            if node is None:
                return
            task = node.task
            assert task.id is not None
            result: StepResult
            try:
                missing = (
                    self.readiness.missing(task.processor, task.date, task.end_date)
                    if self.readiness
                    else None
                )
                if missing:
                    result = StepResult(ok=True, error=missing, skip_reason="upstream_missing")
                else:
                    proc = self.config.processors[task.processor]
                    tag = log.header(task.processor, task.date, task.end_date, task.attempt)
                    ctx = StepContext(
                        processor=task.processor,
                        start=task.date,
                        end=task.end_date,
                        run_id=run_id,
                        attempt=task.attempt,
                        log=log,
                        tag=tag,
                        timeout=proc.timeout,
                        cancelled=node.cancel,
                        on_pid=lambda pid, node=node: self._started(node, pid),  # type: ignore[misc]
                    )
                    result = self.executors(task.processor).run(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken step must not kill the controller
                result = StepResult(ok=False, error=f"{type(exc).__name__}: {exc}")
            self._results.put((task.id, result))

    def _started(self, node: Node, pid: int) -> None:
        node.pid = pid
        assert node.task.id is not None
        self._results.put((_Started(node.task.id, pid), None))

    def _gate_worker(self, gate: Gate, run_id: int, start: str, end: str) -> None:
        assert self.gatekeeper is not None
        try:
            failures = self.gatekeeper.run_checks(
                gate.processor, run_id, dt.date.fromisoformat(start), dt.date.fromisoformat(end)
            )
        except Exception as exc:  # noqa: BLE001 - a broken check blocks, it does not crash
            failures = [f"checks could not run: {exc}"]
        self._results.put((gate, failures))

    def _interrupt(
        self, run_id: int, schedule: Schedule, work: queue.Queue[Node | None], threads: list[Any], log: RunLog
    ) -> Outcome:
        """Stop in-flight steps, return them to pending, mark the run interrupted (resumable)."""
        reason = self._stop_reason or "stopped"
        running = schedule.running
        for node in running.values():
            node.cancel.set()
            if node.pid:
                threading.Thread(target=kill_process_group, args=(node.pid,), daemon=True).start()
        deadline = time.monotonic() + 10
        while running and time.monotonic() < deadline:
            try:
                item, payload = self._results.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, _Started) and item.task_id in running:
                # The step's process started after the cancel above: end it too.
                threading.Thread(target=kill_process_group, args=(item.pid,), daemon=True).start()
            elif isinstance(item, int) and item in running:
                # A step that completed before it could be cancelled is recorded, not run again.
                node = running[item]
                schedule.stop(node)
                if not payload.cancelled and (payload.ok or payload.skip_reason):
                    self._finish(run_id, node, payload, log)
        for _ in threads:
            work.put(None)
        returned = self.store.mark_interrupted(run_id, reason)
        counts = Counter(t.status for t in self.store.tasks(run_id))
        message = (
            f"run {run_id} interrupted ({reason}): {len(returned)} in-flight task(s) returned to pending"
        )
        self.store.add_event("run_interrupted", message, run_id=run_id, data=dict(counts))
        log.event(message)
        self.observer.finished()
        return Outcome(run_id, RunStatus.INTERRUPTED, counts, message)


def _summary(counts: Counter[str]) -> str:
    return ", ".join(
        f"{counts[k]} {k}"
        for k in (
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.SKIPPED,
            TaskStatus.BLOCKED,
            TaskStatus.PENDING,
        )
        if counts[k]
    )
