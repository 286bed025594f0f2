"""Which task waits for which: the dependency links between the runnable tasks of one run.

Links are derived from the config and the task rows, never stored, so a run resumed by another
process rebuilds exactly the same graph. A downstream date waits for every upstream task that
covers it (chunks included); with ``depends_on_past`` a task also waits for the previous task of
its own processor. A processor with blocking checks is a gate: its downstream waits until those
checks have passed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from runbook.config import RunbookConfig


class TaskLike(Protocol):
    @property
    def processor(self) -> str: ...
    @property
    def date(self) -> str: ...
    @property
    def end_date(self) -> str: ...


@dataclass(frozen=True)
class Gate:
    """A virtual node: the blocking checks of ``processor`` after all its tasks in the run."""

    processor: str


def _days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def link(
    config: RunbookConfig,
    tasks: Sequence[TaskLike],
    gated: set[str] | None = None,
    blocking: set[str] | None = None,
) -> tuple[list[list[int | Gate]], dict[Gate, list[int]]]:
    """For each task (by position), what it waits for; and for each gate, the tasks it closes over.

    ``tasks`` are the runnable tasks of one run. ``gated`` names processors whose checks run when
    their part of the run is finished; of those, the downstream of ``blocking`` ones waits for
    the checks to pass (processors with only ``warn`` checks keep pipelining by date).
    """
    gated = gated or set()
    blocking = (blocking or set()) & gated
    covering: dict[tuple[str, str], int] = {}
    by_processor: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        by_processor.setdefault(task.processor, []).append(index)
        for day in _days(task.date, task.end_date) if task.end_date != task.date else [task.date]:
            covering[(task.processor, day)] = index
    gates = {Gate(name): list(by_processor[name]) for name in gated if name in by_processor}
    waits: list[list[int | Gate]] = [[] for _ in tasks]
    for name, indexes in by_processor.items():
        proc = config.processors[name]
        ordered = sorted(indexes, key=lambda i: tasks[i].date)
        for position, index in enumerate(ordered):
            task = tasks[index]
            found: set[int] = set()
            days = _days(task.date, task.end_date) if task.end_date != task.date else [task.date]
            for up in proc.needs:
                for day in days:
                    upstream = covering.get((up, day))
                    if upstream is not None:
                        found.add(upstream)
            if proc.depends_on_past and position > 0:
                found.add(ordered[position - 1])
            waits[index] = [
                *sorted(found),
                *(Gate(up) for up in proc.needs if up in blocking and Gate(up) in gates),
            ]
    return waits, gates
