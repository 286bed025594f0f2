"""The work loop: claim ready tasks from the store, run them on threads, record their results.

One loop serves a run's controller (which also owns the run) and ``runbook worker`` processes
(which only claim): both hold what they claim by lease, extend their leases by heartbeat, and
record a result only while they still hold the task (``runbook.state.queue``). Nothing about the
run is kept in memory beyond the tasks running here, so a worker on another machine needs no plan,
and memory does not grow with the size of a run.

The loop's main thread is the only one that writes to the state store; step threads run steps
and report through a queue.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook.clock import utcnow
from runbook.config import RunbookConfig
from runbook.engine.pools import AdaptivePools
from runbook.engine.seams import Gatekeeper, Observer, Readiness, gate_dates_message, judge_gate
from runbook.errors import StateError
from runbook.formatting import error_line
from runbook.kinds import SkipReason, TaskStatus
from runbook.runlog import RunLog
from runbook.state.connect import DatabaseFault, backend
from runbook.state.queue import Claimed, Outcome, Source
from runbook.state.records import Gate, Run, Task
from runbook.state.store import Store
from runbook.steps import Executor, StepContext, StepResult
from runbook.steps.command import reap_orphans
from runbook.steps.processes import become_subreaper, end_strays, kill_process_group, run_key

HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 60.0
# How long the loop sleeps when it has nothing to do here (others may be working).
IDLE_POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 10.0
GATE_POLL_SECONDS = 2.0
# Tasks claimed beyond the free threads, and results gathered before they are recorded: fast
# steps then cost one round of the store for several of them.
LOOKAHEAD = 32
# A round of a PostgreSQL store costs more (a commit waits for its log flush, every statement
# crosses a socket): there fast steps are claimed and recorded in larger batches, and results
# of fast steps may wait up to FLUSH_SECONDS_POSTGRES (slow steps and failures are recorded at once).
LOOKAHEAD_POSTGRES = 128
FLUSH_SECONDS = 0.25
FLUSH_SECONDS_POSTGRES = 1.0
# Only steps quicker than this (on average) are claimed ahead and recorded in batches: for
# longer ones the store's cost does not matter, and the order of work by date does.
FAST_STEP_SECONDS = 0.02
# How often descendants that escaped their steps and ended are reaped (we are their subreaper).
REAP_SECONDS = 1.0
# How long a dropped connection to the store may stay down before this process gives up.
STORE_RETRY_SECONDS = 20.0
# How long a step thread waits for its job id to be stored before it gives up on the attempt.
JOB_STORE_SECONDS = 60.0


@dataclass
class Running:
    """A task running here: its cancel flag, its step's PID, when it started."""

    task: Task
    started: dt.datetime
    cancel: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None
    stop_jobs: threading.Event = field(default_factory=threading.Event)  # a stop: cancel warehouse jobs


@dataclass
class Tally:
    """What this loop did."""

    done: int = 0
    failed: int = 0
    lost: int = 0


class StoreFault(Exception):  # noqa: N818 - a condition the caller turns into an exit
    """The state store stopped accepting this process's writes."""

    def __init__(self, error: StateError) -> None:
        super().__init__(error.message)
        self.error = error


# What stops a controller or worker with exit 6: a write that kept failing (StoreFault), or a
# read whose connection went away (DatabaseFault).
STORE_FAULTS = (StoreFault, DatabaseFault)


def store_fault_reason(fault: StoreFault | DatabaseFault) -> str:
    """The store's own words for one of :data:`STORE_FAULTS`."""
    return fault.error.message if isinstance(fault, StoreFault) else fault.message


class WorkLoop:
    """Claims and runs tasks for one process (``threads`` steps at once).

    ``sources()`` says which runs to claim from (and, for an owner, with which epoch); the caller
    drives :meth:`step` and decides when to stop. ``logs(run_id)`` gives the run's log here.
    """

    def __init__(
        self,
        store: Store,
        config: RunbookConfig,
        executors: Callable[[str], Executor],
        *,
        worker_id: str,
        threads: int,
        logs: Callable[[int], RunLog],
        runs: Callable[[int], Run | None],
        gatekeeper: Gatekeeper | None = None,
        readiness: Readiness | None = None,
        observer: Observer | None = None,
        redact: Callable[[str], str] = lambda text: text,
        lease_seconds: float = LEASE_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        store_retry_seconds: float | None = None,
        on_pool_throttled: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.store_retry_seconds = store_retry_seconds or STORE_RETRY_SECONDS
        self.config = config
        self.executors = executors
        self.worker_id = worker_id
        self.threads = threads
        self.logs = logs
        self.runs = runs
        self.gatekeeper = gatekeeper
        self.readiness = readiness
        self.observer = observer
        self.redact = redact
        self.lease_seconds = lease_seconds
        # A lease outlives several heartbeats, however short it is set.
        self.heartbeat_seconds = min(heartbeat_seconds, lease_seconds / 3)
        self.running: dict[int, Running] = {}
        self.queued: collections.deque[Task] = collections.deque()  # claimed ahead, not started yet
        self.unrecorded: list[Outcome] = []
        self.pids: list[tuple[int, int]] = []
        self._unrecorded_since = 0.0
        self._pids_since = 0.0
        # A running average of how long steps take here; None until the first one ended.
        self._step_seconds: float | None = None
        postgres = backend(store.url) == "postgresql"
        self.lookahead = LOOKAHEAD_POSTGRES if postgres else LOOKAHEAD
        self.flush_seconds = FLUSH_SECONDS_POSTGRES if postgres else FLUSH_SECONDS
        self._next_reap = 0.0
        self.gates: dict[int, Gate] = {}
        self.tally = Tally()
        self._results: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        self._work: queue.Queue[tuple[Running, StepContext] | None] = queue.Queue()
        self._pool = [threading.Thread(target=self._step_thread, daemon=True) for _ in range(threads)]
        self._next_beat = 0.0
        self._next_gates = 0.0  # gates become ready when tasks end; others' ends are polled for
        self._next_expired = 0.0  # leases run out slowly: look for expired ones now and then
        self.caps = {
            name: proc.workers for name, proc in config.processors.items() if proc.workers is not None
        }
        self.quota_runs: set[int] = set()
        self._run_tokens: dict[int, str] = {}
        self.stop_reason: str | None = None  # set when this process learned that the run must stop
        # Pools shrink when the warehouse throttles and grow back with successes.
        self.pools = AdaptivePools(store, config.pools, guarded=self.guarded, logs=logs, say=self._say,
                                   on_throttled=on_pool_throttled)  # fmt: skip
        become_subreaper()
        for thread in self._pool:
            thread.start()

    # -- one turn of the loop -------------------------------------------------------------------

    def busy(self) -> bool:
        return bool(self.running or self.gates or self.queued or self.unrecorded)

    def heartbeat_due(self) -> bool:
        return time.monotonic() >= self._next_beat

    def beat(self) -> None:
        """Extend this process's leases; steps whose task was taken over are stopped here."""
        now = utcnow()
        held = self.guarded(
            lambda: self.store.beat(
                self.worker_id, now, now + dt.timedelta(seconds=self.lease_seconds), self.tally.done
            )
        )
        self._next_beat = time.monotonic() + self.heartbeat_seconds
        for task in [t for t in self.queued if t.id not in held]:
            self.queued.remove(task)
            self.tally.lost += 1
        for task_id in [t for t in self.running if t not in held]:
            lost = self.running.pop(task_id)
            lost.cancel.set()
            if lost.pid:
                threading.Thread(target=kill_process_group, args=(lost.pid,), daemon=True).start()
            self.tally.lost += 1
            self._event(
                lost.task.run_id, "task_lost", f"{_span(lost.task)}: taken over by another process", lost.task
            )

    def turn(
        self, sources: Sequence[Source], messages: Sequence[tuple[str, int, Any]] = (), *, tasks: bool = True
    ) -> Claimed:
        """One turn: take what the threads reported (``messages``), start claimed tasks waiting
        here, and when it is time, record the results and claim more (and any ready gate) in one
        transaction of the store.

        Results are recorded at once when a step failed, when threads would otherwise idle, or
        when a few have gathered (``lookahead``, ``flush_seconds``); a few tasks beyond the free
        threads are claimed ahead (never tasks of a pool or a capped processor, which others
        count), so that fast steps do not pay a round of the store each.
        """
        self._digest(messages, stopping=False)
        clock = time.monotonic()
        now = utcnow()
        if tasks:
            while self.queued and len(self.running) < self.threads:
                self._start(self.queued.popleft(), now)
        free = max(self.threads - len(self.running), 0) if tasks else 0
        fast = self._step_seconds is not None and self._step_seconds < FAST_STEP_SECONDS
        room = max(self.lookahead - len(self.queued), 0) if tasks and fast else 0
        gates = self.gatekeeper is not None and clock >= self._next_gates
        flush = bool(self.unrecorded) and (
            not tasks
            or not fast
            or len(self.unrecorded) >= self.lookahead + self.threads
            or clock - self._unrecorded_since >= self.flush_seconds
            or any(o.status != TaskStatus.SUCCEEDED for o in self.unrecorded)
        )
        # A step's PID is recorded once it has run for a moment: resume needs it to end its group.
        flush = flush or bool(self.pids and clock - self._pids_since >= self.flush_seconds)
        claim = free > 0
        if not (flush or claim or gates):
            return Claimed()
        outcomes, pids = self.unrecorded, self.pids
        self.unrecorded, self.pids = [], []
        expired = clock >= self._next_expired
        limit = free if claim or flush else 0
        exchanged: tuple[list[bool], Claimed] = self.guarded(
            lambda: self.store.exchange(
                self.worker_id, outcomes, sources, limit=limit, ahead=room if limit else 0,
                pools=self.pools.configured, caps=self.caps, now=now, lease_until=now + dt.timedelta(seconds=self.lease_seconds),
                gates=gates, expired=expired, pids=pids,
            )
        )  # fmt: skip
        held, claimed = exchanged
        if gates:
            self._next_gates = clock + GATE_POLL_SECONDS
        if expired and limit:
            self._next_expired = clock + min(self.heartbeat_seconds, self.lease_seconds / 4)
        for outcome, ok in zip(outcomes, held, strict=True):
            self._announce(outcome, ok)
        if clock >= self._next_reap:
            reap_orphans()
            self._next_reap = clock + REAP_SECONDS
        stray_tasks: dict[int, list[int]] = {}
        for orphan in claimed.orphans:
            stray_tasks.setdefault(orphan.run_id, []).append(orphan.task_id)
            if orphan.pid and orphan.holder.split(":", 1)[0] == self.worker_id.split(":", 1)[0]:
                # The step of a holder that stopped beating runs on this machine: end it before
                # its date runs again, so that no date ever runs twice at the same time.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(orphan.pid, signal.SIGKILL)
        for run_id, task_ids in stray_tasks.items():
            # Its PID may not have been recorded yet: the token in its environment finds it.
            self.end_strays(run_id, task_ids, "of task(s) taken over from a holder whose lease ran out")
        for task in claimed.tasks:
            if len(self.running) < self.threads:
                self._start(task, now)
            else:
                self.queued.append(task)
        for gate in claimed.gates:
            self.gates[gate.id] = gate
            threading.Thread(target=self._gate_thread, args=(gate,), daemon=True).start()
        return claimed

    def wait(self, timeout: float) -> list[tuple[str, int, Any]]:
        """Messages from step and gate threads: wait up to ``timeout`` for the first, then take all."""
        found: list[tuple[str, int, Any]] = []
        for waiting, since in ((self.unrecorded, self._unrecorded_since), (self.pids, self._pids_since)):
            if waiting:  # come back in time to record them
                timeout = min(timeout, max(self.flush_seconds - (time.monotonic() - since), 0.0))
        try:
            found.append(self._results.get(timeout=max(timeout, 0.01)))
        except queue.Empty:
            return found
        while True:
            try:
                found.append(self._results.get_nowait())
            except queue.Empty:
                return found

    def settle(self, messages: Sequence[tuple[str, int, Any]], *, stopping: bool = False) -> None:
        """Record what the threads reported and everything not yet recorded, claiming nothing;
        when ``stopping``, tasks claimed ahead are handed back."""
        self._digest(messages, stopping=stopping)
        outcomes, pids = self.unrecorded, self.pids
        self.unrecorded, self.pids = [], []
        if stopping:
            outcomes += [Outcome(task, TaskStatus.PENDING, returned=True) for task in self.queued]
            self.queued.clear()
        if outcomes or pids:
            held, _ = self.guarded(
                lambda: self.store.exchange(self.worker_id, outcomes, [], limit=0, pools={}, caps={}, now=utcnow(),
                                            lease_until=utcnow(), gates=False, pids=pids)
            )  # fmt: skip
            for outcome, ok in zip(outcomes, held, strict=True):
                self._announce(outcome, ok)
        reap_orphans()

    def _digest(self, messages: Sequence[tuple[str, int, Any]], *, stopping: bool) -> None:
        """Step results become outcomes to record, step PIDs are noted; gate verdicts are recorded now."""
        for kind, key, payload in messages:
            if kind == "job":
                job_id, stored, answer = payload
                try:
                    answer.append(key in self.running and self._store_job(key, job_id))
                finally:
                    stored.set()
            elif kind == "throttle" and key in self.running:
                self.pools.throttled(self.running[key].task, payload)
            elif kind == "pid" and key in self.running:
                self.running[key].pid = payload
                if not self.pids:
                    self._pids_since = time.monotonic()
                self.pids.append((key, payload))
            elif kind == "task" and key in self.running:
                if not self.unrecorded:
                    self._unrecorded_since = time.monotonic()
                task = self.running[key].task
                for event_kind, message in payload.events:
                    self._event(task.run_id, event_kind, f"{_span(task)}: {message}", task)
                if payload.quota_reset is not None:
                    self._quota(task, payload)
                outcome = self._outcome(self.running.pop(key), payload, stopping)
                if outcome.seconds is not None:  # how long steps take decides whether to claim ahead
                    average = self._step_seconds
                    self._step_seconds = (
                        outcome.seconds if average is None else 0.8 * average + 0.2 * outcome.seconds
                    )
                self.unrecorded.append(outcome)
            elif kind == "gate" and key in self.gates:
                gate = self.gates.pop(key)
                failures, failed_dates = payload
                self._finish_gate(gate, failures, failed_dates)
                if failures:
                    message = f"blocking check failed on {gate.processor}: {failures[0]}"
                    self._event(gate.run_id, "gate_blocked", message, processor=gate.processor)
                    self._say(message)
                elif failed_dates:
                    message = gate_dates_message(gate, failed_dates)
                    self._event(gate.run_id, "gate_blocked", message, processor=gate.processor)
                    self._say(message)

    def stop_running(
        self, grace: float = STOP_GRACE_SECONDS, *, record: bool = True, cancel_jobs: bool = True
    ) -> None:
        """Ask every step here to end (SIGTERM, then SIGKILL after ``grace``) and record how each
        ended: one that finished meanwhile is recorded as succeeded, the others (and tasks claimed
        ahead) are handed back. Without ``record`` (the store is gone) nothing is written: their
        leases run out. With ``cancel_jobs`` their warehouse jobs are cancelled (a stop); without,
        they are left running for whoever takes the tasks over to re-attach to (a lost run, a
        store gone, a daily quota: what runs is paid for and will be used)."""
        for running in self.running.values():
            if cancel_jobs:
                running.stop_jobs.set()  # before cancel: the step cancels its warehouse job
            running.cancel.set()
            if running.pid:
                threading.Thread(target=kill_process_group, args=(running.pid, grace), daemon=True).start()
        deadline = time.monotonic() + grace + 2
        while self.running and time.monotonic() < deadline:
            messages = self.wait(0.2)
            for kind, key, payload in messages:
                if kind == "pid" and key in self.running:  # started after the cancel above: end it too
                    threading.Thread(target=kill_process_group, args=(payload, grace), daemon=True).start()
            self._digest(messages, stopping=True)
        if record:
            self.settle([], stopping=True)
        else:
            self.unrecorded, self.pids = [], []
            self.queued.clear()

    def close(self) -> None:
        """Let the step threads end (they are idle once nothing runs here)."""
        for _ in self._pool:
            self._work.put(None)

    # -- what the threads do --------------------------------------------------------------------

    def _start(self, task: Task, now: dt.datetime) -> None:
        running = Running(task, now)
        self.running[task.id] = running
        proc = self.config.processors.get(task.processor)
        log = self.logs(task.run_id)
        tag = log.header(task.processor, task.date, task.end_date, task.attempt)
        ctx = StepContext(
            processor=task.processor, start=task.date, end=task.end_date, run_id=task.run_id, attempt=task.attempt,
            log=log, tag=tag, timeout=proc.timeout if proc else None, cancelled=running.cancel,
            on_pid=self._pid_reporter(task.id), task_id=task.id, job_id=task.job_id, stop_jobs=running.stop_jobs,
            on_job=self._job_recorder(task.id), on_throttle=self._throttle_reporter(task.id),
            run_token=self.run_token(task.run_id),
        )  # fmt: skip
        self._work.put((running, ctx))

    def _pid_reporter(self, task_id: int) -> Callable[[int], None]:
        def report(pid: int) -> None:
            self._results.put(("pid", task_id, pid))

        return report

    def end_strays(self, run_id: int, task_ids: Sequence[int], what: str) -> None:
        """End the processes of the run's steps on this machine that no live runbook process
        follows (see :func:`runbook.steps.processes.end_strays`); the log and an event say so."""
        ended = end_strays(run_key(run_id, self.run_token(run_id)), task_ids)
        if ended:
            message = f"ended {ended} step process(es) {what}"
            self.logs(run_id).event(message)
            self.guarded(
                functools.partial(
                    self.store.add_event, "strays_ended", message, run_id=run_id, data={"processes": ended}
                )
            )

    def run_token(self, run_id: int) -> str:
        """When the run was created (microseconds): what tells its job ids from those of a run
        with the same number in a state store made anew."""
        if run_id not in self._run_tokens:
            run = self.guarded(lambda: self.runs(run_id))
            created = run.created_at if run is not None else None
            self._run_tokens[run_id] = created.astimezone(dt.UTC).isoformat() if created else ""
        return self._run_tokens[run_id]

    def _store_job(self, task_id: int, job_id: str) -> bool:
        return bool(self.guarded(lambda: self.store.set_task_job(task_id, self.worker_id, job_id)))

    def _job_recorder(self, task_id: int) -> Callable[[str], bool]:
        """What a step calls to store its job id before submitting the job (the main thread
        writes it; the step waits for the answer)."""

        def record(job_id: str) -> bool:
            stored, answer = threading.Event(), list[bool]()
            self._results.put(("job", task_id, (job_id, stored, answer)))
            return stored.wait(JOB_STORE_SECONDS) and bool(answer and answer[0])

        return record

    def _throttle_reporter(self, task_id: int) -> Callable[[str], None]:
        def report(reason: str) -> None:
            self._results.put(("throttle", task_id, reason))

        return report

    # -- quotas ----------------------------------------------------------------------------------

    def _quota(self, task: Task, result: StepResult) -> None:
        """A daily quota is used up: the run stops (interrupted) until it resets."""
        resets_at = result.quota_reset
        if resets_at is None or task.run_id in self.quota_runs:
            return
        self.quota_runs.add(task.run_id)
        resets = resets_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        last = ((result.error or "").strip().splitlines() or [""])[-1]
        reason = f"daily quota exhausted; resets at {resets} ({self.redact(last)[:300]})"
        self.guarded(lambda: self.store.quota_exhausted(task.run_id, reason, resets_at, utcnow()))
        self._event(task.run_id, "quota_exhausted", reason, task)
        self._say(f"run {task.run_id}: {reason}")
        self.stop_reason = reason

    def _step_thread(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            running, ctx = item
            task = running.task
            result: StepResult
            try:
                if task.processor not in self.config.processors:
                    result = StepResult(
                        ok=False, error=f"processor {task.processor!r} is not in this runbook.yaml"
                    )
                else:
                    missing = (
                        self.readiness.missing(task.processor, task.date, task.end_date)
                        if self.readiness
                        else None
                    )
                    if missing:
                        result = StepResult(ok=True, error=missing, skip_reason=SkipReason.UPSTREAM_MISSING)
                    else:
                        result = self.executors(task.processor).run(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken step must not kill the loop
                result = StepResult(ok=False, error=f"{type(exc).__name__}: {exc}")
            self._results.put(("task", task.id, result))

    def _gate_thread(self, gate: Gate) -> None:
        assert self.gatekeeper is not None
        run = self.runs(gate.run_id)
        failed_dates: dict[str, str] = {}
        try:
            if run is None:
                raise RuntimeError(f"run {gate.run_id} not found")
            failures, failed_dates = judge_gate(self.gatekeeper, self.store, gate, run)
        except Exception as exc:  # noqa: BLE001 - a broken check blocks, it does not crash
            failures = [f"checks could not run: {exc}"]
        self._results.put(("gate", gate.id, (failures, failed_dates)))

    # -- results ----------------------------------------------------------------------------------

    def _outcome(self, running: Running, result: StepResult, stopping: bool) -> Outcome:
        task = running.task
        now = utcnow()

        def outcome(status: str, **fields: Any) -> Outcome:
            seconds = (now - running.started).total_seconds()
            return Outcome(task, status, exit_code=result.exit_code, seconds=seconds, started=running.started,
                           finished=now, bytes_processed=result.bytes_processed, bytes_billed=result.bytes_billed,
                           slot_ms=result.slot_ms, **fields)  # fmt: skip

        error = self.redact(result.error) if result.error else None
        if result.cancelled or (stopping and not result.ok) or result.quota_reset is not None:
            # Handed back: the attempt does not count (a quota used up is nobody's failure).
            return outcome(TaskStatus.PENDING, returned=True, error=error if result.quota_reset else None)
        if result.skip_reason:
            return outcome(TaskStatus.SKIPPED, error=error, skip_reason=result.skip_reason)
        if result.ok:
            return outcome(TaskStatus.SUCCEEDED, rows_affected=result.rows_affected)
        proc = self.config.processors.get(task.processor)
        if proc is not None and task.attempt < task.max_attempts:
            retry_at = now + dt.timedelta(seconds=proc.retries.wait_before(task.attempt))
            return outcome(TaskStatus.PENDING, error=error, retry_at=retry_at)
        return outcome(TaskStatus.FAILED, error=error)

    def _announce(self, outcome: Outcome, held: bool) -> None:
        """Events, log lines and progress for what was recorded."""
        task = outcome.task
        if not held:
            self.tally.lost += 1
            return
        last = ((outcome.error or "").strip().splitlines() or [""])[-1]
        if outcome.status == TaskStatus.PENDING and not outcome.returned:
            wait = self.config.processors[task.processor].retries.wait_before(task.attempt)
            message = f"{_span(task)} attempt {task.attempt} failed ({last[:120]}); retry in {wait:g}s"
            self._event(task.run_id, "task_retry", message, task, data={"error": error_line(outcome.error)})
        elif outcome.status == TaskStatus.FAILED:
            self.tally.failed += 1
            self._event(
                task.run_id,
                "task_failed",
                f"{_span(task)} failed after {task.attempt} attempt(s): {last[:200]}",
                task,
                data={"error": error_line(outcome.error)},
            )
        elif outcome.status == TaskStatus.SKIPPED:
            self._event(task.run_id, "task_skipped", f"{_span(task)}: {outcome.error}", task, log=False)
        if outcome.status == TaskStatus.SUCCEEDED:
            self.pools.succeeded(task)
        if outcome.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED):
            self.tally.done += 1
            if self.observer is not None:
                self.observer.task_finished(task.processor, outcome.status)

    def _event(self, run_id: int, kind: str, message: str, task: Task | None = None, *, processor: str | None = None,
               log: bool = True, data: dict[str, Any] | None = None) -> None:  # fmt: skip
        name, day = (task.processor, task.date) if task else (processor, None)
        self.guarded(
            lambda: self.store.add_event(kind, message, run_id=run_id, processor=name, date=day, data=data)
        )
        if log:
            self.logs(run_id).event(message)

    def _say(self, text: str) -> None:
        if self.observer is not None:
            self.observer.message(text)

    def _finish_gate(
        self, gate: Gate, failures: list[str], failed_dates: dict[str, str] | None = None
    ) -> None:
        self.guarded(lambda: self.store.finish_gate(self.worker_id, gate, failures, utcnow(), failed_dates))

    def guarded(self, action: Callable[[], Any]) -> Any:
        """Run a write of the store. A dropped connection is tried again for a while (a database
        that restarts); a store that keeps refusing, or that became unwritable, stops this process
        (StoreFault). Writes are conditional, so one that went through before the connection
        dropped is not done twice: the second finds the task no longer held."""
        deadline: float | None = None
        pause = 0.2
        while True:
            try:
                return action()
            except StateError as error:
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.store_retry_seconds
                if not error.transient or now >= deadline:
                    raise StoreFault(error) from error
                time.sleep(min(pause, max(deadline - now, 0.0)))
                pause = min(pause * 2, 5.0)


def _span(task: Task) -> str:
    span = task.date if task.date == task.end_date else f"{task.date}..{task.end_date}"
    return f"{task.processor} {span}"
