"""``runbook worker``: a process that helps runs along, on this machine or any other.

A worker needs the workspace's runbook.yaml and the shared state store (``RUNBOOK_DATABASE_URL``),
nothing else: it claims ready tasks of one run (``--run``) or of every active run, runs them on its
threads, and records their results, under the same leases, pools and caps as the run's controller.
It never owns a run: the controller decides when it ends. A processor whose code version here
differs from the one the run recorded is not claimed (the worker says so once, and why).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.clock import utcnow
from runbook.config import RunbookConfig
from runbook.engine.liveness import adopted_pid, this_host
from runbook.engine.seams import Gatekeeper, Readiness
from runbook.engine.work import (
    HEARTBEAT_SECONDS,
    IDLE_POLL_SECONDS,
    LEASE_SECONDS,
    STORE_FAULTS,
    Tally,
    WorkLoop,
    store_fault_reason,
)
from runbook.errors import StoreUnavailable
from runbook.kinds import RunStatus
from runbook.runlog import RunLog
from runbook.state.queue import Source
from runbook.state.records import Run
from runbook.state.store import Store
from runbook.steps import Executor

SOURCES_SECONDS = 2.0  # how often the active runs are looked up again


@dataclass
class WorkerReport:
    worker_id: str
    tally: Tally
    reason: str
    skipped: dict[int, list[str]] = field(default_factory=dict)  # run -> processors refused (versions)


class Worker:
    """Claims and runs tasks until told to stop, idle for long enough, or done its share."""

    def __init__(
        self,
        store: Store,
        config: RunbookConfig,
        executors: Callable[[str], Executor],
        *,
        versions: dict[str, str],
        logs: Callable[[int], RunLog],
        threads: int,
        gatekeeper: Gatekeeper | None = None,
        readiness: Readiness | None = None,
        redact: Callable[[str], str] = lambda text: text,
        say: Callable[[str], None] = lambda line: None,
        lease_seconds: float | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        store_retry_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.versions = versions
        self.say = say
        self.host = this_host()
        self.worker_id = f"{self.host[:40]}:{os.getpid()}:w{uuid.uuid4().hex[:6]}"
        self._stop: str | None = None
        self._previous: dict[int, Any] = {}
        self.loop = WorkLoop(
            store, config, executors, worker_id=self.worker_id, threads=threads, logs=logs, runs=store.get_run,
            gatekeeper=gatekeeper, readiness=readiness, redact=redact, lease_seconds=lease_seconds or LEASE_SECONDS,
            heartbeat_seconds=heartbeat_seconds, store_retry_seconds=store_retry_seconds,
        )  # fmt: skip

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: Any) -> None:
            self._stop = f"received {signal.Signals(signum).name}"

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, handler)

    def restore_signal_handlers(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def work(self, *, run_id: int | None, max_tasks: int | None, idle_exit: float | None) -> WorkerReport:
        """Work until a signal, ``max_tasks`` tasks done, or ``idle_exit`` seconds with nothing to do."""
        store, loop = self.store, self.loop
        store.register_worker(
            self.worker_id, host=self.host, pid=os.getpid(), kind="worker", run_id=run_id, now=utcnow()
        )
        skipped: dict[int, list[str]] = {}
        sources: list[Source] = []
        next_sources = 0.0
        idle_since: float | None = None
        reason = "stopped"
        messages: list[tuple[str, int, Any]] = []
        try:
            while True:
                if loop.heartbeat_due():
                    loop.beat()
                if self._stop is not None:
                    reason = self._stop
                    loop.settle(messages)
                    # A worker that leaves hands its tasks back with their warehouse jobs running:
                    # whoever claims them next re-attaches instead of paying for them again.
                    loop.stop_running(cancel_jobs=False)
                    break
                if time.monotonic() >= next_sources:
                    sources = self._sources(run_id, skipped)
                    next_sources = time.monotonic() + SOURCES_SECONDS
                done_enough = max_tasks is not None and loop.tally.done >= max_tasks
                claimed = loop.turn(sources, messages, tasks=not done_enough)
                messages = []
                got = bool(claimed.tasks or claimed.gates)
                if done_enough and not loop.busy():
                    reason = f"done {loop.tally.done} task(s)"
                    break
                if loop.busy() or got:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    reason = f"idle for {idle_exit:g}s"
                    break
                messages = loop.wait(0.05 if got else IDLE_POLL_SECONDS)
        except STORE_FAULTS as fault:
            loop.stop_running(grace=2, record=False, cancel_jobs=False)
            raise StoreUnavailable(
                f"worker {self.worker_id}: the state store stopped accepting writes ({store_fault_reason(fault)}); "
                "stopped"
            ) from fault
        finally:
            loop.close()
            with contextlib.suppress(Exception):  # the store may be what failed
                store.worker_stopped(self.worker_id, utcnow(), reason)
        return WorkerReport(self.worker_id, loop.tally, reason, skipped)

    def _sources(self, run_id: int | None, skipped: dict[int, list[str]]) -> list[Source]:
        """The runs to claim from now, with the processors whose code version matches here."""
        if run_id is not None:
            run = self.store.get_run(run_id)
            runs = [run] if run is not None and run.status == RunStatus.RUNNING else []
        else:
            runs = self.store.list_runs(statuses=[RunStatus.RUNNING], limit=None)
        found = []
        for run in runs:
            if adopted_pid(run) is not None:
                continue  # its dates are the adopted process's to build, not this worker's
            allowed, refused = self._allowed(run)
            if refused and run.id not in skipped:
                skipped[run.id] = refused
                note = "; ".join(refused)
                self.say(f"run {run.id}: not claiming {note}")
                self.store.worker_note(self.worker_id, f"run {run.id}: {note}")
                self.store.add_event("worker_refused", f"worker {self.worker_id}: {note}", run_id=run.id)
            if allowed:
                found.append(Source(run.id, None, frozenset(allowed), self.store.gated_processors(run.id)))
        return found

    def _allowed(self, run: Run) -> tuple[list[str], list[str]]:
        allowed, refused = [], []
        for name in run.processors:
            here, there = self.versions.get(name), run.versions.get(name)
            if name not in self.config.processors:
                refused.append(f"{name} (not in this runbook.yaml)")
            elif here != there:
                refused.append(f"{name} (code version here {here}, run {run.id} recorded {there})")
            else:
                allowed.append(name)
        return allowed, refused
