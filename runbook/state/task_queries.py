"""Reads of tasks, as plain SQL over a :class:`~runbook.state.connect.Database`.

:class:`TaskQueries` answers for single tasks and the dates they cover: a run's tasks and their
errors, what each date of a processor was last built as (the ``task_latest`` projection), the
open and live tasks of runs, what ``runbook resume`` may skip (:func:`built_since`), and the
errors of failed attempts. It is one of the mixins :class:`~runbook.state.queries.Queries` combines.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from runbook.state import latest
from runbook.state.connect import Database
from runbook.state.records import Task, columns, from_rows

TASK_COLUMNS = ", ".join(columns(Task))


class TaskQueries:
    """Reads of tasks and of the dates they cover."""

    db: Database

    # -- tasks ------------------------------------------------------------------------------------

    def tasks(
        self, run_id: int, *, statuses: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Task]:
        sql = f"SELECT {TASK_COLUMNS} FROM task WHERE run_id = :run"
        params: dict[str, Any] = {"run": run_id}
        if statuses:
            sql += " AND status IN :statuses"
            params["statuses"] = list(statuses)
        sql += " ORDER BY seq, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return from_rows(Task, self.db.rows(sql, params))

    def count_tasks(self, run_id: int, statuses: Sequence[str]) -> int:
        return int(
            self.db.scalar(
                "SELECT COUNT(*) FROM task WHERE run_id = :run AND status IN :statuses",
                {"run": run_id, "statuses": list(statuses)},
            )
            or 0
        )

    def task_errors(self, task_ids: Sequence[int]) -> dict[int, str | None]:
        if not task_ids:
            return {}
        rows = self.db.rows("SELECT id, error_tail FROM task WHERE id IN :ids", {"ids": list(task_ids)})
        return {row[0]: row[1] for row in rows}

    def succeeded_ranges(self, processor: str, start: str, end: str) -> list[tuple[str, str, str | None]]:
        """(date, end_date, code_version) of every succeeded task of ``processor`` touching [start, end],
        oldest first: callers let the newest build of a date win."""
        rows = self.db.rows(
            "SELECT date, end_date, code_version FROM task WHERE processor = :p AND status = 'succeeded' "
            "AND date <= :end AND end_date >= :start ORDER BY id",
            {"p": processor, "start": start, "end": end},
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def latest_by_date(self, processor: str, start: str, end: str) -> list[tuple[Any, ...]]:
        """What state each first date of ``processor`` in [start, end] is in: one row per date,
        the date then the columns of :data:`runbook.state.latest.COLUMNS`: one indexed range of
        the ``task_latest`` projection, however often a date was rerun."""
        return self.db.rows(latest.READ, {"processor": processor, "start": start, "end": end})

    def latest_by_processor_date(
        self, processors: Sequence[str], start: str, end: str
    ) -> dict[str, list[tuple[Any, ...]]]:
        """:meth:`latest_by_date` for several processors in one statement, by processor."""
        found: dict[str, list[tuple[Any, ...]]] = {name: [] for name in processors}
        if not processors:
            return found
        params = {"processors": list(processors), "start": start, "end": end}
        for row in self.db.rows(latest.READ_MANY, params):
            found[row[0]].append(row[1:])
        return found

    def live_task_dates(
        self, run_ids: Sequence[int], start: str, end: str
    ) -> list[tuple[str, str, str, str]]:
        """(processor, date, end_date, status) of the running and pending tasks of ``run_ids``
        that touch [start, end]."""
        if not run_ids:
            return []
        rows = self.db.rows(
            "SELECT processor, date, end_date, status FROM task WHERE run_id IN :ids "
            "AND status IN ('running', 'pending') AND date <= :end AND end_date >= :start",
            {"ids": list(run_ids), "start": start, "end": end},
        )
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def open_task_dates(self, run_ids: Sequence[int]) -> list[tuple[int, str, str, str, str]]:
        """(run_id, processor, date, end_date, status) of the tasks of ``run_ids`` that are not
        done: pending, running, and the failed, blocked and cancelled ones ``runbook resume`` reopens."""
        if not run_ids:
            return []
        rows = self.db.rows(
            "SELECT run_id, processor, date, end_date, status FROM task WHERE run_id IN :ids "
            "AND status IN ('pending', 'running', 'failed', 'blocked', 'cancelled') ORDER BY run_id, seq, id",
            {"ids": list(run_ids)},
        )
        return [(int(row[0]), row[1], row[2], row[3], row[4]) for row in rows]

    def built_since(self, run_id: int, versions: Mapping[str, str]) -> dict[tuple[str, str], tuple[int, int]]:
        """The failed, blocked and cancelled tasks of run ``run_id`` whose dates another run has
        built since at the code versions given: (processor, date) -> (task id, the run that built
        it). ``runbook resume`` skips them as ``already_done`` instead of reopening them."""
        return built_since(self.db, run_id, versions)

    def attempt_errors(self, run_ids: Sequence[int]) -> dict[tuple[int, str, str], list[str]]:
        """(run, processor, date) -> the error line of each failed attempt, oldest first, from the
        ``task_retry`` and ``task_failed`` events of ``run_ids``."""
        if not run_ids:
            return {}
        # Only the columns it reads: a handoff over a million tasks reads a few thousand of these.
        rows = self.db.rows(
            "SELECT run_id, processor, date, data FROM event WHERE run_id IN :ids "
            "AND kind IN ('task_retry', 'task_failed') AND processor IS NOT NULL AND date IS NOT NULL ORDER BY id",
            {"ids": list(run_ids)},
        )
        found: dict[tuple[int, str, str], list[str]] = {}
        for run_id, processor, date, data in rows:
            if isinstance(data, str | bytes):
                data = json.loads(data)
            error = data.get("error") if isinstance(data, dict) else None
            found.setdefault((run_id, processor, date), []).append(str(error) if error is not None else "")
        return found

    def tasks_covering(
        self, processor: str, day: str, *, lookback_days: int, limit: int
    ) -> tuple[list[Task], int]:
        """(the newest ``limit`` tasks of ``processor`` in any run whose dates cover ``day``, newest
        first; how many there are). ``lookback_days``: how far before ``day`` a chunk can start."""
        first = (dt.date.fromisoformat(day) - dt.timedelta(days=lookback_days)).isoformat()
        where = "processor = :p AND date >= :first AND date <= :day AND end_date >= :day"
        params = {"p": processor, "first": first, "day": day}
        total = self.db.scalar(f"SELECT COUNT(*) FROM task WHERE {where}", params) or 0
        rows = self.db.rows(
            f"SELECT {TASK_COLUMNS} FROM task WHERE {where} ORDER BY id DESC LIMIT {int(limit)}", params
        )
        return from_rows(Task, rows), int(total)


def built_since(
    db: Database, run_id: int, versions: Mapping[str, str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """See :meth:`Queries.built_since`: a build newer than the task's attempt (a later task, or
    one that ended after it), of another run, covering its dates, at ``versions[processor]``."""
    rows = db.rows(
        "SELECT t.id, t.processor, t.date, l.built_run_id, l.built_version FROM task t "
        "JOIN task_latest l ON l.processor = t.processor AND l.date = t.date "
        "WHERE t.run_id = :run AND t.status IN ('failed', 'blocked', 'cancelled') AND l.built_run_id IS NOT NULL "
        "AND l.built_run_id <> :run AND l.built_end_date >= t.end_date "
        "AND (l.built_id > t.id OR l.built_at > COALESCE(t.finished_at, t.started_at))",
        {"run": run_id},
    )
    return {
        (str(processor), str(date)): (int(task_id), int(built_run))
        for task_id, processor, date, built_run, version in rows
        if version == versions.get(str(processor))
    }
