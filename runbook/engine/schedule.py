"""The in-memory schedule of one run: what waits for what, what is ready, what may start now.

Pure bookkeeping, no I/O: the controller asks it for the next task to start and tells it what
finished; it answers which dependents became ready, which must be blocked (or skipped) and which
gates can run their checks. Every operation costs O(dependents) or O(processors), never O(tasks),
so a run of 10,000 dates schedules as cheaply per task as one of 100.
"""

from __future__ import annotations

import datetime as dt
import heapq
import threading
from collections import Counter
from dataclasses import dataclass, field

from runbook.clock import utcnow
from runbook.config import RunbookConfig
from runbook.engine.graph import Gate, link
from runbook.kinds import TaskStatus
from runbook.state.records import Task


@dataclass
class Node:
    task: Task
    waits: int = 0
    dependents: list[int | Gate] = field(default_factory=list)
    started: dt.datetime | None = None
    pid: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class Settled:
    """What finishing an item changed: tasks to mark (blocked or skipped) and gates to start."""

    marked: list[int] = field(default_factory=list)
    status: str = TaskStatus.BLOCKED
    gates: list[Gate] = field(default_factory=list)


class Schedule:
    """Dependency counters, per-processor ready heaps (ordered by date), retry timers, capacity."""

    def __init__(self, config: RunbookConfig, rows: list[Task], gated: set[str], blocking: set[str]) -> None:
        self.config = config
        runnable = [t for t in rows if t.status != TaskStatus.SKIPPED]
        waits, gates = link(config, runnable, gated, blocking)
        self.nodes: dict[int, Node] = {}
        ids: list[int] = []
        for task in runnable:
            assert task.id is not None
            self.nodes[task.id] = Node(task)
            ids.append(task.id)
        self.gate_waits: dict[Gate, int] = {}
        self.gate_dependents: dict[Gate, list[int | Gate]] = {gate: [] for gate in gates}
        for gate, members in gates.items():
            for position in members:
                self.nodes[ids[position]].dependents.append(gate)
            self.gate_waits[gate] = len(members)
        for position, deps in enumerate(waits):
            tid = ids[position]
            for dep in deps:
                if isinstance(dep, Gate):
                    self.gate_dependents[dep].append(tid)
                else:
                    self.nodes[ids[dep]].dependents.append(tid)
                self.nodes[tid].waits += 1
        self.ready: dict[str, list[tuple[int, int]]] = {}
        self.delayed: list[tuple[dt.datetime, int, int]] = []
        self.running: dict[int, Node] = {}
        self.active_gates: set[Gate] = set()
        self.per_processor: Counter[str] = Counter()
        self.per_pool: Counter[str] = Counter()

    # -- what can start --------------------------------------------------------------------------

    def push_ready(self, tid: int) -> None:
        task = self.nodes[tid].task
        if task.not_before is not None and task.not_before > utcnow():
            heapq.heappush(self.delayed, (task.not_before, task.seq, tid))
        else:
            heapq.heappush(self.ready.setdefault(task.processor, []), (task.seq, tid))

    def release_due(self, now: dt.datetime) -> None:
        """Retries whose backoff has passed become ready."""
        while self.delayed and self.delayed[0][0] <= now:
            _, seq, tid = heapq.heappop(self.delayed)
            heapq.heappush(self.ready.setdefault(self.nodes[tid].task.processor, []), (seq, tid))

    def seconds_to_next_retry(self, now: dt.datetime) -> float | None:
        return max((self.delayed[0][0] - now).total_seconds(), 0.0) if self.delayed else None

    def pick(self) -> Node | None:
        """The earliest ready task whose processor and pool have a free slot (pipelined by date)."""
        best: str | None = None
        for name, heap in self.ready.items():
            if not heap:
                continue
            proc = self.config.processors[name]
            if proc.workers is not None and self.per_processor[name] >= proc.workers:
                continue
            if proc.pool and self.per_pool[proc.pool] >= self.config.pools[proc.pool]:
                continue
            if best is None or heap[0] < self.ready[best][0]:
                best = name
        return None if best is None else self.nodes[heapq.heappop(self.ready[best])[1]]

    def start(self, node: Node, now: dt.datetime) -> None:
        assert node.task.id is not None
        node.task.status = TaskStatus.RUNNING
        node.task.attempt += 1
        node.started = now
        node.cancel = threading.Event()
        self.running[node.task.id] = node
        self._count(node.task.processor, +1)

    def stop(self, node: Node) -> None:
        """The node's step is no longer running (finished, failed or cancelled)."""
        assert node.task.id is not None
        if self.running.pop(node.task.id, None) is not None:
            self._count(node.task.processor, -1)

    def _count(self, processor: str, delta: int) -> None:
        self.per_processor[processor] += delta
        pool = self.config.processors[processor].pool
        if pool:
            self.per_pool[pool] += delta

    def idle(self) -> bool:
        """Nothing running, no checks running, nothing ready or waiting for a retry."""
        return (
            not self.running and not self.active_gates and not any(self.ready.values()) and not self.delayed
        )

    # -- what finishing changes ------------------------------------------------------------------

    def settle(self, item: int | Gate, ok: bool, *, skipped: bool = False) -> Settled:
        """``item`` finished: release its dependents, or block (skip) them all the way down."""
        dependents = self.gate_dependents[item] if isinstance(item, Gate) else self.nodes[item].dependents
        settled = Settled(status=TaskStatus.SKIPPED if skipped else TaskStatus.BLOCKED)
        if ok:
            for dep in dependents:
                if isinstance(dep, Gate):
                    self._gate_member_done(dep, settled)
                    continue
                node = self.nodes[dep]
                node.waits -= 1
                if node.waits == 0 and node.task.status == TaskStatus.PENDING:
                    self.push_ready(dep)
            return settled
        frontier = list(dependents)
        while frontier:
            dep = frontier.pop()
            if isinstance(dep, Gate):
                self._gate_member_done(dep, settled)
                continue
            node = self.nodes[dep]
            if node.task.status == TaskStatus.PENDING:
                node.task.status = settled.status
                settled.marked.append(dep)
                frontier.extend(node.dependents)
        return settled

    def _gate_member_done(self, gate: Gate, settled: Settled) -> None:
        self.gate_waits[gate] -= 1
        if self.gate_waits[gate] == 0:
            self.active_gates.add(gate)
            settled.gates.append(gate)
