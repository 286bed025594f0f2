"""The controller: owns one run and drives it to its end, with any workers that join it.

Taking the run is one compare-and-set on its epoch; every later write of the run (its status, its
end) is conditional on still holding that epoch, so two controllers never drive one run: the one
that lost stops claiming, stops its steps and never writes the run's final status. The run ends
(succeeded, failed or blocked) in the one write that also checks that nothing is pending or
running. The work itself is claimed from the store by :class:`~runbook.engine.work.WorkLoop`, the
same loop ``runbook worker`` runs on other machines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runbook.clock import utcnow
from runbook.engine.liveness import this_host
from runbook.engine.seams import Gatekeeper, Notices, Observer, QuietObserver, Readiness
from runbook.engine.work import (
    HEARTBEAT_SECONDS,
    IDLE_POLL_SECONDS,
    LEASE_SECONDS,
    STORE_FAULTS,
    WorkLoop,
    store_fault_reason,
)
from runbook.errors import RunBusy, StoreUnavailable
from runbook.kinds import NotifyEvent, RunStatus, TaskStatus
from runbook.runlog import RunLog
from runbook.state.ownership import LostRun
from runbook.state.queue import Source
from runbook.state.records import Run
from runbook.state.store import Store
from runbook.steps import Executor
from runbook.workspace import Workspace

# The longest the loop sleeps without looking at a stop request (a signal does not wake it).
STOP_POLL_SECONDS = 0.5
PROGRESS_SECONDS = 1.0
# The progress counts read every task of the run (about 80 ms at 1,000,000 tasks): they are read
# at most this share of the time, so that a big run's loop does not spend a tenth of it counting.
PROGRESS_SHARE = 0.05
STALL_CHECK_SECONDS = 5.0
NOTIFY_WATCH_SECONDS = 10.0  # how often a controller looks whether its own run is stalled
RUN_END_EVENTS = {
    RunStatus.SUCCEEDED: NotifyEvent.FINISHED,
    RunStatus.FAILED: NotifyEvent.FAILED,
    RunStatus.BLOCKED: NotifyEvent.BLOCKED,
}


@dataclass
class Outcome:
    run_id: int
    status: str
    counts: Counter[str]
    message: str = ""


class Controller:
    """Executes runs recorded in the store. One controller process drives one run at a time."""

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        executors: Callable[[str], Executor],
        *,
        observer: Observer | None = None,
        gatekeeper: Gatekeeper | None = None,
        readiness: Readiness | None = None,
        notices: Notices | None = None,
        redactor: Callable[[str], str] = lambda text: text,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        lease_seconds: float | None = None,
    ) -> None:
        self.workspace = workspace
        self.config = workspace.config
        self.store = store
        self.executors = executors
        self.observer = observer or QuietObserver()
        self._watched = observer is not None  # nobody draws progress: the counts are not read
        self.gatekeeper = gatekeeper
        self.readiness = readiness
        self.notices = notices
        self.redact = redactor
        self.heartbeat_seconds = heartbeat_seconds
        self.lease_seconds = lease_seconds or workspace.lease_seconds or LEASE_SECONDS
        self.host = this_host()
        self.controller_id = f"{self.host[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop_reason: str | None = None
        self._quota_stop = False  # the stop is a daily quota's: running warehouse jobs are not cancelled
        self._previous_handlers: dict[int, Any] = {}

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

    # -- the run ---------------------------------------------------------------------------------

    def execute(self, run_id: int, log_path: str, *, seen_epoch: int | None = None) -> Outcome:
        """Take the run (from ``seen_epoch`` when it was handed over, else from its current epoch),
        run its work to the end or a stop, and record the outcome."""
        store = self.store
        run = store.get_run(run_id)
        if run is None:
            raise RunBusy(f"run {run_id} not found")
        epoch = store.take_run(
            run_id, seen_epoch=run.epoch if seen_epoch is None else seen_epoch, owner=self.controller_id,
            pid=os.getpid(), host=self.host, log_path=log_path, now=utcnow(),
        )  # fmt: skip
        if epoch is None:
            current = store.get_run(run_id)
            owner = f"PID {current.pid} on {current.host}" if current else "another controller"
            raise RunBusy(f"run {run_id} was just taken by {owner}: not started twice")
        log = RunLog(self.workspace.resolve(log_path), self.redact)  # type: ignore[arg-type]
        store.register_worker(self.controller_id, host=self.host, pid=os.getpid(), kind="controller", run_id=run_id,
                              now=utcnow())  # fmt: skip
        store.add_event(
            "run_started", f"controller {self.controller_id} took the run (epoch {epoch})", run_id=run_id
        )
        log.event(f"run {run_id} started by {self.controller_id} (pid {os.getpid()}, epoch {epoch})")
        loop = WorkLoop(
            store, self.config, self.executors, worker_id=self.controller_id, threads=run.workers,
            logs=lambda other: log if other == run_id else log, runs=store.get_run, gatekeeper=self.gatekeeper,
            readiness=self.readiness, observer=self.observer, redact=self.redact, lease_seconds=self.lease_seconds,
            heartbeat_seconds=self.heartbeat_seconds, store_retry_seconds=self.workspace.store_retry_seconds,
            on_pool_throttled=self._throttle_notice(epoch),
        )  # fmt: skip
        try:
            # Steps of this run whose controller died (kill -9 at the moment it started them, or
            # a descendant that escaped) may still run here: end them before their dates rerun.
            loop.end_strays(run_id, (), "of this run left by a controller that died")
            return self._drive(run, epoch, loop, log)
        except STORE_FAULTS as fault:
            message = f"run {run_id}: the state store stopped accepting writes ({store_fault_reason(fault)}); stopped"
            self.observer.message(message)
            log.event(message)
            # Nothing can be recorded: the run shows as interrupted (its owner is gone), and
            # resume continues it once the store is back.
            loop.stop_running(grace=2, record=False, cancel_jobs=False)
            raise StoreUnavailable(message) from fault
        finally:
            if self.notices is not None:
                self.notices.flush()  # bounded: what is left goes to the next watcher
            loop.close()
            with contextlib.suppress(Exception):  # the store may be what failed
                store.worker_stopped(self.controller_id, utcnow())
            log.close()

    def _throttle_notice(self, epoch: int) -> Callable[[int, dict[str, Any]], None] | None:
        notices = self.notices
        if notices is None:
            return None

        def emit(run_id: int, data: dict[str, Any]) -> None:
            details = {key: data.get(key) for key in ("pool", "size", "effective_size", "reason")}
            notices.emit(NotifyEvent.THROTTLED, run_id, epoch=epoch, occurrence=f"{data['pool']}:{data['effective_size']}",
                         details={**details, "wait_seconds": None})  # fmt: skip

        return emit

    def _drive(self, run: Run, epoch: int, loop: WorkLoop, log: RunLog) -> Outcome:
        run_id = run.id
        store = self.store
        sources = [Source(run_id, epoch, gated=store.gated_processors(run_id))]
        self.observer.started(run_id, self._totals(run_id))
        next_progress = next_stall = next_watch = time.monotonic()
        messages: list[tuple[str, int, Any]] = []
        while True:
            if loop.heartbeat_due():
                still, stop_at = loop.guarded(
                    lambda: store.owner_beat(run_id, self.controller_id, epoch, utcnow())
                )
                loop.beat()
                if not still:
                    return self._lost(run_id, loop, log)
                if stop_at is not None and self._stop_reason is None:
                    # A worker that met a used-up daily quota asks for the stop with its reason.
                    current = store.get_run(run_id)
                    quota = current is not None and current.resume_after is not None and current.error
                    self._stop_reason = (
                        str(current.error) if quota and current else "stop requested (runbook stop)"
                    )
            if loop.stop_reason is not None and self._stop_reason is None:
                self._stop_reason = loop.stop_reason
            if self._stop_reason is not None:
                loop.settle(messages)
                return self._interrupt(run_id, epoch, loop, log)
            claimed = loop.turn(sources, messages)
            if claimed.lost:
                return self._lost(run_id, loop, log)
            if self._watched and time.monotonic() >= next_progress:
                counted = time.monotonic()
                self.observer.progress(self._totals(run_id))
                took = time.monotonic() - counted
                next_progress = time.monotonic() + max(PROGRESS_SECONDS, took / PROGRESS_SHARE)
            if self.notices is not None and time.monotonic() >= next_watch:
                self.notices.watch([run_id])
                next_watch = time.monotonic() + NOTIFY_WATCH_SECONDS
            timeout = min(self.heartbeat_seconds, STOP_POLL_SECONDS)
            if not loop.busy() and not claimed.tasks and not claimed.gates:
                try:
                    status = loop.guarded(lambda: store.finalize(run_id, self.controller_id, epoch, utcnow()))
                except LostRun:
                    return self._lost(run_id, loop, log)
                if status is not None:
                    return self._finished(run_id, epoch, status, log)
                if time.monotonic() >= next_stall:
                    # Nothing runs anywhere and nothing is ready: settle what can never start.
                    if loop.guarded(lambda: store.stalled(run_id, utcnow())):
                        store.add_event(
                            "run_stalled", "pending tasks could never start: blocked", run_id=run_id
                        )
                    next_stall = time.monotonic() + STALL_CHECK_SECONDS
                timeout = min(timeout, IDLE_POLL_SECONDS)
            else:
                next_stall = time.monotonic() + STALL_CHECK_SECONDS
            messages = loop.wait(timeout)

    def _totals(self, run_id: int) -> dict[str, Counter[str]]:
        found: dict[str, Counter[str]] = {}
        for (name, status, _), count in self.store.outcomes([run_id])[run_id].items():
            found.setdefault(name, Counter())[status] += count
        return {name: found[name] for name in self.config.order() if name in found} | {
            name: counts for name, counts in found.items() if name not in self.config.processors
        }

    def _finished(self, run_id: int, epoch: int, status: str, log: RunLog) -> Outcome:
        counts = self.store.progress([run_id])[run_id]
        summary = _summary(counts)
        self.observer.progress(self._totals(run_id))
        self.store.add_event(f"run_{status}", summary, run_id=run_id, data=dict(counts))
        log.event(f"run {run_id} {status}: {summary}")
        if self.notices is not None and status in RUN_END_EVENTS:
            self.notices.emit(RUN_END_EVENTS[RunStatus(status)], run_id, epoch=epoch)
        self.observer.finished()
        return Outcome(run_id, status, counts)

    def _interrupt(self, run_id: int, epoch: int, loop: WorkLoop, log: RunLog) -> Outcome:
        """Stop the steps running here (one that completes meanwhile counts), hand back the rest,
        mark the run interrupted: resumable."""
        reason = self._stop_reason or "stopped"
        # A daily quota: jobs already running finish and are paid for; resume takes their results.
        loop.stop_running(cancel_jobs=not self._quota_stop)
        try:
            returned = loop.guarded(
                lambda: self.store.interrupt(run_id, self.controller_id, epoch, reason, utcnow())
            )
        except LostRun:
            return self._lost(run_id, loop, log)
        counts = self.store.progress([run_id])[run_id]
        message = f"run {run_id} interrupted ({reason}): {returned} in-flight task(s) returned to pending"
        self.store.add_event("run_interrupted", message, run_id=run_id, data=dict(counts))
        log.event(message)
        if self.notices is not None:
            self.notices.emit(NotifyEvent.INTERRUPTED, run_id, epoch=epoch, details={"reason": reason})
        self.observer.finished()
        return Outcome(run_id, RunStatus.INTERRUPTED, counts, message)

    def _lost(self, run_id: int, loop: WorkLoop, log: RunLog) -> Outcome:
        """Another controller took the run: stop everything here and write nothing about the run."""
        loop.stop_running(grace=2, cancel_jobs=False)  # the new owner re-attaches to them
        current = self.store.get_run(run_id)
        owner = f"PID {current.pid} on {current.host}" if current else "another controller"
        message = f"run {run_id} was taken over by {owner}: this controller stopped"
        log.event(message)
        self.observer.finished()
        raise RunBusy(message)


def _summary(counts: Counter[str]) -> str:
    keys = (
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.BLOCKED,
        TaskStatus.PENDING,
    )
    return ", ".join(f"{counts[k]} {k}" for k in keys if counts[k])
