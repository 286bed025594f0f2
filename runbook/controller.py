"""The controller: runs the tasks of one run with bounded parallelism, pools, retries and gates.

The controller's main thread is the only one that writes to the state store; worker threads only
run steps and report back through a queue. Scheduling is in memory (per-processor ready heaps,
dependency counters), so the cost per task does not grow with the size of the run.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from runbook.errors import StateError
from runbook.executors import Executor, StepContext, StepResult, kill_process_group
from runbook.graph import Gate, link
from runbook.planner import UPSTREAM_MISSING
from runbook.runlog import RunLog
from runbook.state.models import Task, utcnow
from runbook.state.store import Store
from runbook.workspace import Workspace

HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 60.0
# The longest the main loop sleeps without looking at a stop request (a signal does not wake it).
STOP_POLL_SECONDS = 0.5


class Observer(Protocol):
    """Receives progress from the controller (the CLI draws bars; tests may count)."""

    def started(self, run_id: int, totals: dict[str, Counter[str]]) -> None: ...
    def task_finished(self, processor: str, status: str) -> None: ...
    def message(self, text: str) -> None: ...
    def finished(self) -> None: ...


class QuietObserver:
    def started(self, run_id: int, totals: dict[str, Counter[str]]) -> None:
        pass

    def task_finished(self, processor: str, status: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def finished(self) -> None:
        pass


class Gatekeeper(Protocol):
    """Runs validation checks (see ``runbook.checks``); the controller only needs this much."""

    def blocking(self, processor: str) -> bool: ...
    def has_checks(self, processor: str) -> bool: ...
    def run_checks(self, processor: str, run_id: int, start: dt.date, end: dt.date) -> list[str]:
        """Run the processor's checks, store their results, return messages of failed blocking ones."""
        ...


class Readiness(Protocol):
    def missing(self, processor: str, start: str, end: str) -> str | None:
        """None when the processor's upstream tables have rows for the dates, else what is missing."""
        ...


@dataclass
class _Node:
    task: Task
    waits: int = 0
    dependents: list[int | Gate] = field(default_factory=list)
    started: dt.datetime | None = None
    pid: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


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
        self._results: queue.Queue[tuple[int | Gate | _Started, Any]] = queue.Queue()

    # -- signals ---------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: Any) -> None:
            if self._stop_reason is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request_stop(f"received {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, handler)

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
        todo = [t for t in rows if t.status in ("pending", "running")]
        runnable = [t for t in rows if t.status not in ("skipped",)]
        names = {t.processor for t in runnable}
        keeper = self.gatekeeper
        gated = {name for name in names if keeper is not None and keeper.has_checks(name)}
        blocking = {name for name in gated if keeper is not None and keeper.blocking(name)}
        waits, gates = link(self.config, runnable, gated, blocking)
        nodes: dict[int, _Node] = {}
        position_to_id: list[int] = []
        for task in runnable:
            assert task.id is not None
            nodes[task.id] = _Node(task)
            position_to_id.append(task.id)
        gate_members: dict[Gate, set[int]] = {}
        gate_waits: dict[Gate, int] = {}
        gate_dependents: dict[Gate, list[int | Gate]] = {g: [] for g in gates}
        for gate, members in gates.items():
            ids = {position_to_id[m] for m in members}
            gate_members[gate] = ids
            for tid in ids:
                nodes[tid].dependents.append(gate)
            gate_waits[gate] = len(ids)
        for position, deps in enumerate(waits):
            tid = position_to_id[position]
            for dep in deps:
                if isinstance(dep, Gate):
                    gate_dependents[dep].append(tid)
                else:
                    nodes[position_to_id[dep]].dependents.append(tid)
                nodes[tid].waits += 1

        ready: dict[str, list[tuple[int, int]]] = {}
        delayed: list[tuple[dt.datetime, int, int]] = []
        running: dict[int, _Node] = {}
        active_gates: set[Gate] = set()
        per_processor: Counter[str] = Counter()
        per_pool: Counter[str] = Counter()
        finished: Counter[str] = Counter(t.status for t in rows if t.status not in ("pending", "running"))
        blocked_by_gate = False
        failed_any = any(t.status == "failed" for t in rows)

        def settle(item: int | Gate, ok: bool, reason: str = "", skipped: bool = False) -> None:
            """An item finished: release its dependents, or block (or skip) them all the way down."""
            nonlocal blocked_by_gate
            dependents = gate_dependents[item] if isinstance(item, Gate) else nodes[item].dependents
            if ok:
                for dep in dependents:
                    if isinstance(dep, Gate):
                        gate_waits[dep] -= 1
                        if gate_waits[dep] == 0:
                            start_gate(dep)
                    else:
                        node = nodes[dep]
                        node.waits -= 1
                        if node.waits == 0 and node.task.status == "pending":
                            push_ready(dep)
                return
            to_block: list[int] = []
            frontier = list(dependents)
            while frontier:
                dep = frontier.pop()
                if isinstance(dep, Gate):
                    gate_waits[dep] -= 1
                    if gate_waits[dep] == 0:
                        start_gate(dep)
                    continue
                node = nodes[dep]
                if node.task.status == "pending":
                    node.task.status = "blocked"
                    to_block.append(dep)
                    frontier.extend(node.dependents)
            if to_block:
                # A date skipped for missing upstream data is skipped downstream too, not blocked.
                status = "skipped" if skipped else "blocked"
                store.set_tasks_status(
                    to_block, status, reason, skip_reason=UPSTREAM_MISSING if skipped else None
                )
                for dep in to_block:
                    nodes[dep].task.status = status
                    finished[status] += 1
                    self.observer.task_finished(nodes[dep].task.processor, status)

        def push_ready(tid: int) -> None:
            task = nodes[tid].task
            if task.not_before is not None and task.not_before > utcnow():
                heapq.heappush(delayed, (task.not_before, task.seq, tid))
            else:
                heapq.heappush(ready.setdefault(task.processor, []), (task.seq, tid))

        def start_gate(gate: Gate) -> None:
            active_gates.add(gate)
            threading.Thread(target=self._gate_worker, args=(gate, run_id, start, end), daemon=True).start()

        for task in todo:
            assert task.id is not None
            if task.status == "running":
                task.status = "pending"
            if nodes[task.id].waits == 0:
                push_ready(task.id)
        # Dependencies already satisfied by tasks finished before (e.g. on resume).
        for task in runnable:
            assert task.id is not None
            if task.status in ("pending", "running"):
                continue
            settle(
                task.id,
                task.status == "succeeded",
                f"upstream {task.processor} {task.date} {task.status}",
                skipped=task.status == "skipped",
            )

        by_processor = store.processor_progress(run_id)
        self.observer.started(run_id, {n: by_processor[n] for n in self.config.order() if n in by_processor})
        work: queue.Queue[_Node | None] = queue.Queue()
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
            while delayed and delayed[0][0] <= now:
                _, seq, tid = heapq.heappop(delayed)
                heapq.heappush(ready.setdefault(nodes[tid].task.processor, []), (seq, tid))
            while len(running) < workers:
                picked = self._pick(ready, per_processor, per_pool)
                if picked is None:
                    break
                tid = picked
                node = nodes[tid]
                proc = self.config.processors[node.task.processor]
                lease = now + dt.timedelta(seconds=LEASE_SECONDS)
                if not store.claim_task(
                    tid, self.controller_id, lease, versions.get(node.task.processor), now=now
                ):
                    continue  # another controller took it
                node.task.status = "running"
                node.task.attempt += 1
                node.started = now
                node.cancel = threading.Event()
                running[tid] = node
                per_processor[node.task.processor] += 1
                if proc.pool:
                    per_pool[proc.pool] += 1
                work.put(node)
            if not running and not active_gates and not any(ready.values()) and not delayed:
                break
            timeout = min(self.heartbeat_seconds, STOP_POLL_SECONDS)
            if delayed:
                timeout = min(timeout, max((delayed[0][0] - utcnow()).total_seconds(), 0.0))
            try:
                item, payload = self._results.get(timeout=max(timeout, 0.01))
            except queue.Empty:
                continue
            while True:
                if isinstance(item, _Started):
                    store.set_task_pid(item.task_id, item.pid)
                elif isinstance(item, Gate):
                    active_gates.discard(item)
                    failures: list[str] = payload
                    if failures:
                        blocked_by_gate = True
                        message = f"blocking check failed on {item.processor}: {failures[0]}"
                        store.add_event("gate_blocked", message, run_id=run_id, processor=item.processor)
                        log.event(message)
                        self.observer.message(message)
                    settle(item, not failures, f"blocked by gate: {failures[0]}" if failures else "")
                else:
                    if self._finish(run_id, nodes[item], payload, log, running, per_processor, per_pool):
                        push_ready(item)
                    else:
                        status = nodes[item].task.status
                        finished[status] += 1
                        failed_any = failed_any or status == "failed"
                        detail = f"upstream {nodes[item].task.processor} {nodes[item].task.date} failed"
                        if status in ("succeeded", "failed", "skipped"):
                            settle(
                                item,
                                status == "succeeded",
                                detail.replace("failed", status),
                                skipped=status == "skipped",
                            )
                try:
                    item, payload = self._results.get_nowait()
                except queue.Empty:
                    break

        if self._stop_reason is not None:
            return self._interrupt(run_id, running, work, threads, log)
        for _ in threads:
            work.put(None)
        status = "failed" if failed_any else "blocked" if blocked_by_gate else "succeeded"
        counts = store.progress([run_id])[run_id]  # a GROUP BY, not every task row again
        store.finish_run(run_id, status)
        store.add_event(f"run_{status}", _summary(counts), run_id=run_id, data=dict(counts))
        log.event(f"run {run_id} {status}: {_summary(counts)}")
        self.observer.finished()
        return Outcome(run_id, status, counts)

    def _pick(
        self, ready: dict[str, list[tuple[int, int]]], per_processor: Counter[str], per_pool: Counter[str]
    ) -> int | None:
        """The earliest ready task whose processor and pool have a free slot (pipelined by date)."""
        best: str | None = None
        for name, heap in ready.items():
            if not heap:
                continue
            proc = self.config.processors[name]
            if proc.workers is not None and per_processor[name] >= proc.workers:
                continue
            if proc.pool and per_pool[proc.pool] >= self.config.pools[proc.pool]:
                continue
            if best is None or heap[0] < ready[best][0]:
                best = name
        return None if best is None else heapq.heappop(ready[best])[1]

    def _finish(
        self,
        run_id: int,
        node: _Node,
        result: StepResult,
        log: RunLog,
        running: dict[int, _Node],
        per_processor: Counter[str],
        per_pool: Counter[str],
    ) -> bool:
        """Record an attempt's result; True when the task goes back to wait for a retry."""
        task = node.task
        assert task.id is not None
        running.pop(task.id, None)
        per_processor[task.processor] -= 1
        proc = self.config.processors[task.processor]
        if proc.pool:
            per_pool[proc.pool] -= 1
        now = utcnow()
        if result.cancelled:
            return False
        error = self.redact(result.error) if result.error else None
        span = task.date if task.date == task.end_date else f"{task.date}..{task.end_date}"
        if result.skip_reason:
            task.status = "skipped"
            self.store.set_tasks_status([task.id], "skipped", error, skip_reason=result.skip_reason)
            self.store.add_event(
                "task_skipped",
                f"{task.processor} {span}: {error}",
                run_id=run_id,
                processor=task.processor,
                date=task.date,
            )
            self.observer.task_finished(task.processor, "skipped")
            return False
        if result.ok:
            task.status = "succeeded"
            self.store.finish_task(
                task.id,
                "succeeded",
                started_at=node.started,
                exit_code=result.exit_code,
                rows_affected=result.rows_affected,
                now=now,
            )
            self.observer.task_finished(task.processor, "succeeded")
            return False
        if task.attempt < task.max_attempts:
            wait = proc.retries.wait_before(task.attempt)
            retry_at = now + dt.timedelta(seconds=wait)
            task.status = "pending"
            task.not_before = retry_at
            self.store.finish_task(
                task.id,
                "failed",
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
        task.status = "failed"
        self.store.finish_task(
            task.id, "failed", started_at=node.started, exit_code=result.exit_code, error=error, now=now
        )
        last = (error or "").strip().splitlines()[-1:] or [""]
        message = f"{task.processor} {span} failed after {task.attempt} attempt(s): {last[0][:200]}"
        self.store.add_event(
            "task_failed",
            f"{message}: {last[0][:200]}",
            run_id=run_id,
            processor=task.processor,
            date=task.date,
        )
        log.event(message)
        self.observer.task_finished(task.processor, "failed")
        return False

    def _worker(self, work: queue.Queue[_Node | None], run_id: int, log: RunLog) -> None:
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

    def _started(self, node: _Node, pid: int) -> None:
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
        self,
        run_id: int,
        running: dict[int, _Node],
        work: queue.Queue[_Node | None],
        threads: list[Any],
        log: RunLog,
    ) -> Outcome:
        """Stop in-flight steps, return them to pending, mark the run interrupted (resumable)."""
        reason = self._stop_reason or "stopped"
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
                if not payload.cancelled and (payload.ok or payload.skip_reason):
                    self._finish(run_id, running[item], payload, log, running, Counter(), Counter())
                running.pop(item, None)
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
        return Outcome(run_id, "interrupted", counts, message)


def _summary(counts: Counter[str]) -> str:
    return ", ".join(
        f"{counts[k]} {k}" for k in ("succeeded", "failed", "skipped", "blocked", "pending") if counts[k]
    )
