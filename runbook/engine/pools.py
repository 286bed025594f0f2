"""Pools that adapt to the warehouse: halved when it throttles, grown back one slot per success.

A pool's configured size is in runbook.yaml; its effective size lives in the store, shared by every
process that works on the run (controller and ``runbook worker`` alike), and changes only by a
conditional write: of two processes that halve the same pool at once, one does it and the other
takes the new size. Each process keeps the last sizes it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from runbook.clock import utcnow
from runbook.runlog import RunLog
from runbook.state.records import Task
from runbook.state.store import Store

# After this process halved a pool, further throttles within this time do not halve it again
# (they are the same burst); successes grow it back one slot each.
THROTTLE_COOLDOWN_SECONDS = 2.0


class AdaptivePools:
    """The configured pools of one process and the effective sizes it last saw in the store.

    ``guarded`` runs a write of the store the way the work loop does (retried while a connection
    is down, a StoreFault when the store refuses); ``say`` tells the terminal; ``on_throttled``
    is told of every halving (the controller sends notifications).
    """

    def __init__(
        self,
        store: Store,
        configured: Mapping[str, int],
        *,
        guarded: Callable[[Callable[[], Any]], Any],
        logs: Callable[[int], RunLog],
        say: Callable[[str], None],
        on_throttled: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.configured = dict(configured)
        self.guarded = guarded
        self.logs = logs
        self.say = say
        self.on_throttled = on_throttled
        self.sizes: dict[str, tuple[int, int]] = {}  # pool -> (configured size, effective size)
        self._halved_at: dict[str, float] = {}
        if self.configured:
            self.guarded(lambda: self.store.ensure_pools(self.configured, utcnow()))
            self.sizes = self.guarded(self.store.pool_sizes)

    def throttled(self, task: Task, reason: str) -> None:
        """The warehouse throttled a step of ``task``: halve its pool (at least 1), once a burst."""
        self.logs(task.run_id).write(
            f"throttled by the warehouse ({reason})", f"{task.processor} {task.date}"
        )
        pool = task.pool
        if pool is None or pool not in self.configured:
            return
        clock = time.monotonic()
        if clock - self._halved_at.get(pool, -1e9) < THROTTLE_COOLDOWN_SECONDS:
            return
        size, effective = self._seen(pool)
        target = max(1, effective // 2)
        if target == effective:
            return
        self._halved_at[pool] = clock
        self._resize(task, pool, size, effective, target, f"throttled ({reason})", "pool_throttled", reason)

    def succeeded(self, task: Task) -> None:
        """A step of ``task`` succeeded: a shrunken pool gets one slot back, up to its size."""
        pool = task.pool
        if pool is None or pool not in self.configured or not self.sizes:
            return
        size, effective = self._seen(pool)
        if effective < size:
            self._resize(
                task, pool, size, effective, effective + 1, "a step succeeded", "pool_recovered", None
            )

    def _seen(self, pool: str) -> tuple[int, int]:
        configured = self.configured[pool]
        return self.sizes.get(pool, (configured, configured))

    def _resize(
        self,
        task: Task,
        pool: str,
        size: int,
        seen: int,
        target: int,
        why: str,
        kind: str,
        reason: str | None,
    ) -> None:
        if not self.guarded(lambda: self.store.resize_pool(pool, seen, target, utcnow())):
            self.sizes = self.guarded(self.store.pool_sizes)  # another process changed it first
            return
        self.sizes[pool] = (size, target)
        message = f"pool {pool}: {seen} -> {target} of {size} slots ({why})"
        data = {"pool": pool, "size": size, "effective_size": target, "previous": seen, "reason": reason}
        self.guarded(lambda: self.store.add_event(kind, message, run_id=task.run_id, processor=task.processor,
                                                  date=task.date, data=data))  # fmt: skip
        self.logs(task.run_id).event(message)
        if kind == "pool_throttled":
            self.say(message)
            if self.on_throttled is not None:
                self.on_throttled(task.run_id, data)
