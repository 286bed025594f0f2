"""Which task waits for which: the dependency links between the runnable tasks of one run.

Links are derived from the config and the task rows and recorded in the store when the run is
created (``task_dep``, ``gate_dep``), so that any process can tell which tasks are ready. A
downstream date waits for every upstream task that covers it (chunks included); with
``depends_on_past`` a task also waits for the previous task of its own processor. A processor with
checks has a gate: its checks run once its tasks are done, and when one of them is blocking its
downstream waits for them to pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Protocol

from runbook.config import RunbookConfig


class TaskLike(Protocol):
    @property
    def processor(self) -> str: ...
    @property
    def date(self) -> str: ...
    @property
    def end_date(self) -> str: ...


def _days(first: str, last: str) -> list[str]:
    if first == last:
        return [first]
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def dependencies(config: RunbookConfig, tasks: Sequence[TaskLike]) -> Iterator[tuple[int, int]]:
    """(upstream position, task position) for each link between ``tasks``, the runnable tasks of a run."""
    covering: dict[tuple[str, str], int] = {}
    by_processor: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        by_processor.setdefault(task.processor, []).append(index)
        for day in _days(task.date, task.end_date):
            covering[(task.processor, day)] = index
    for name, indexes in by_processor.items():
        proc = config.processors[name]
        ordered = sorted(indexes, key=lambda i: tasks[i].date)
        for position, index in enumerate(ordered):
            task = tasks[index]
            found: set[int] = set()
            for up in proc.needs:
                for day in _days(task.date, task.end_date):
                    upstream = covering.get((up, day))
                    if upstream is not None:
                        found.add(upstream)
            if proc.depends_on_past and position > 0:
                found.add(ordered[position - 1])
            for upstream in sorted(found):
                yield upstream, index


def gates(config: RunbookConfig, tasks: Sequence[TaskLike]) -> list[tuple[str, bool, list[int]]]:
    """(processor, blocking, positions of the tasks that wait for its gate) for each processor of
    the run that has checks. Only a blocking gate holds its direct downstream back."""
    present = {task.processor for task in tasks}
    found = []
    for name in config.order():
        proc = config.processors[name]
        if name not in present or not proc.checks:
            continue
        blocking = any(check.severity == "block" for check in proc.checks)
        waiting = [
            i for i, task in enumerate(tasks) if blocking and name in config.processors[task.processor].needs
        ]
        found.append((name, blocking, waiting))
    return found
