"""Reads of runs and of what their tasks add up to, as plain SQL over the state store.

:class:`RunQueries` answers for whole runs: the runs themselves (by id, filtered, of a session),
the store's :meth:`~RunQueries.fingerprint`, and per run the task counts, timings, costs, pools
and worker processes, each in a few statements that aggregate on the indexes. It is one of the
mixins :class:`~runbook.state.queries.Queries` combines.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from runbook.kinds import FINISHED_RUN_STATUSES, STEP_FINISHED
from runbook.state.connect import Database
from runbook.state.records import Run, Worker, columns, from_rows

RUN_COLUMNS = ", ".join(columns(Run))
WORKER_COLUMNS = ", ".join(columns(Worker))

# (processor, status, skip_reason) -> tasks
Outcomes = dict[tuple[str, str, str | None], int]


class RunQueries:
    """Reads of runs, of their task counts and of the processes that worked on them."""

    db: Database

    # -- runs -------------------------------------------------------------------------------------

    def get_run(self, run_id: int) -> Run | None:
        found = from_rows(Run, self.db.rows(f"SELECT {RUN_COLUMNS} FROM run WHERE id = :id", {"id": run_id}))
        return found[0] if found else None

    def runs_by_id(self, run_ids: Sequence[int]) -> list[Run]:
        """The runs ``run_ids`` that exist, by id."""
        if not run_ids:
            return []
        sql = f"SELECT {RUN_COLUMNS} FROM run WHERE id IN :ids ORDER BY id"
        return from_rows(Run, self.db.rows(sql, {"ids": list(run_ids)}))

    def list_runs(
        self,
        *,
        statuses: Sequence[str] | None = None,
        processor: str | None = None,
        since: dt.datetime | None = None,
        overlapping: tuple[str, str] | None = None,
        limit: int | None = 50,
    ) -> list[Run]:
        """Runs, newest first, filtered by status, a processor they include, start time or dates."""
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {}
        if statuses:
            where.append("status IN :statuses")
            params["statuses"] = list(statuses)
        if since is not None:
            where.append("created_at >= :since")
            params["since"] = _time_param(self.db, since)
        if overlapping is not None:
            where.append("start_date <= :last AND end_date >= :first")
            params.update(first=overlapping[0], last=overlapping[1])
        sql = f"SELECT {RUN_COLUMNS} FROM run WHERE {' AND '.join(where)} ORDER BY id DESC"
        if limit and processor is None:
            sql += f" LIMIT {int(limit)}"
        runs = from_rows(Run, self.db.rows(sql, params))
        if processor is not None:
            runs = [run for run in runs if processor in run.processors]
        return runs[:limit] if limit else runs

    def run_date_span(self) -> tuple[str | None, str | None]:
        """The first and last date any run ever covered."""
        row = self.db.rows("SELECT MIN(start_date), MAX(end_date) FROM run")[0]
        return row[0], row[1]

    def scoped_runs(
        self, session_id: int | None, since: dt.datetime | None, until: dt.datetime, *, limit: int
    ) -> tuple[list[Run], int]:
        """(the newest ``limit`` runs, how many there are) of a session and of no session between
        ``since`` and ``until``."""
        where, params = scope_filter(self.db, "session_id", "session", session_id, "created_at", since, until)
        total = self.db.scalar(f"SELECT COUNT(*) FROM run WHERE {where}", params) or 0
        runs = from_rows(
            Run,
            self.db.rows(
                f"SELECT {RUN_COLUMNS} FROM run WHERE {where} ORDER BY id DESC LIMIT {int(limit)}", params
            ),
        )
        return runs, int(total)

    def fingerprint(self) -> tuple[Any, ...]:
        """A few indexed reads that change whenever a report on the store may: the newest id of
        every table that grows (tasks, events, notes, check results, runs, sessions), how many
        runs are in each status and when the last one finished, every unfinished run's status,
        heartbeat and quota pause with its tasks by status, sessions ended, and the workers' newest
        heartbeat.
        ``runbook serve`` keeps a rendered handoff for as long as this stays the same."""
        finished = {"finished": list(FINISHED_RUN_STATUSES)}
        newest = self.db.rows(
            "SELECT (SELECT MAX(id) FROM task), (SELECT MAX(id) FROM event), (SELECT MAX(id) FROM note), "
            "(SELECT MAX(id) FROM check_result), (SELECT MAX(id) FROM run), (SELECT MAX(id) FROM work_session), "
            "(SELECT COUNT(ended_at) FROM work_session), "
            "(SELECT COUNT(*) FROM worker), (SELECT MAX(heartbeat_at) FROM worker), "
            "(SELECT COUNT(stopped_at) FROM worker)"
        )
        statuses = self.db.rows(
            "SELECT status, COUNT(*), MAX(finished_at) FROM run GROUP BY status ORDER BY status"
        )
        live = self.db.rows(
            "SELECT id, status, heartbeat_at, finished_at, epoch, stop_requested_at, resume_after FROM run "
            "WHERE status NOT IN :finished ORDER BY id",
            finished,
        )
        tasks = self.db.rows(
            "SELECT run_id, status, COUNT(*) FROM task WHERE run_id IN "
            "(SELECT id FROM run WHERE status NOT IN :finished) GROUP BY run_id, status ORDER BY run_id, status",
            finished,
        )
        return tuple(tuple(str(value) for value in row) for row in [*newest, *statuses, *live, *tasks])

    # -- task counts ------------------------------------------------------------------------------

    def outcomes(self, run_ids: Sequence[int]) -> dict[int, Outcomes]:
        """Per run: task counts by processor, status and skip reason, in one GROUP BY."""
        found: dict[int, Outcomes] = {run_id: {} for run_id in run_ids}
        if not run_ids:
            return found
        rows = self.db.rows(
            "SELECT run_id, processor, status, skip_reason, COUNT(*) FROM task WHERE run_id IN :ids "
            "GROUP BY run_id, processor, status, skip_reason",
            {"ids": list(run_ids)},
        )
        for run_id, processor, status, reason, count in rows:
            found[run_id][(processor, status, reason)] = int(count)
        return found

    def progress(self, run_ids: Sequence[int]) -> dict[int, Counter[str]]:
        """Task counts by status for each run."""
        found: dict[int, Counter[str]] = {run_id: Counter() for run_id in run_ids}
        if not run_ids:
            return found
        rows = self.db.rows(
            "SELECT run_id, status, COUNT(*) FROM task WHERE run_id IN :ids GROUP BY run_id, status",
            {"ids": list(run_ids)},
        )
        for run_id, status, count in rows:
            found[run_id][status] = int(count)
        return found

    def finished_windows(self, run_ids: Sequence[int]) -> dict[int, tuple[int, float]]:
        """Per run: (tasks a step finished, seconds from the first start to the last finish)."""
        found = {run_id: (0, 0.0) for run_id in run_ids}
        if not run_ids:
            return found
        rows = self.db.rows(
            "SELECT run_id, COUNT(*), MIN(started_at), MAX(finished_at) FROM task "
            "WHERE run_id IN :ids AND status IN :statuses GROUP BY run_id",
            {"ids": list(run_ids), "statuses": list(STEP_FINISHED)},
        )
        from runbook.formatting import as_utc

        for run_id, count, first, last in rows:
            start, end = as_utc(first), as_utc(last)
            if count and start is not None and end is not None:
                found[run_id] = (int(count), max((end - start).total_seconds(), 0.0))
        return found

    def last_activity(self, run_ids: Sequence[int]) -> dict[int, dt.datetime | None]:
        """Per run: when a task of it last started or finished (None when none ever did)."""
        found: dict[int, dt.datetime | None] = {run_id: None for run_id in run_ids}
        if not run_ids:
            return found
        from runbook.formatting import as_utc

        rows = self.db.rows(
            "SELECT run_id, MAX(started_at), MAX(finished_at) FROM task WHERE run_id IN :ids GROUP BY run_id",
            {"ids": list(run_ids)},
        )
        for run_id, started, finished in rows:
            moments = [m for m in (as_utc(started), as_utc(finished)) if m is not None]
            found[int(run_id)] = max(moments) if moments else None
        return found

    def run_processor_stats(self, run_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Per run, processor, status and skip reason: tasks, first start, last finish, rows
        affected, and the dates the tasks cover (a chunk of ``batch_days`` counts each of its
        dates). :func:`outcomes_of` folds it into what :meth:`outcomes` answers, so a caller that
        needs both reads the tasks once."""
        if not run_ids:
            return []
        from runbook.formatting import as_utc

        # The counts and times come from ix_task_run_outcome alone; the dates beyond the first of
        # each chunk (batch_days), apart: computing a span for every task costs more than the rest.
        rows = self.db.rows(
            "SELECT run_id, processor, status, skip_reason, COUNT(*), MIN(started_at), MAX(finished_at), "
            "SUM(rows_affected) FROM task WHERE run_id IN :ids "
            "GROUP BY run_id, processor, status, skip_reason ORDER BY run_id, processor, status, skip_reason",
            {"ids": list(run_ids)},
        )
        more = (
            "CAST(end_date AS DATE) - CAST(date AS DATE)"
            if self.db.dialect == "postgresql"
            else "CAST(julianday(end_date) - julianday(date) AS INTEGER)"
        )
        chunks = {
            (run_id, processor, status, reason): int(days or 0)
            for run_id, processor, status, reason, days in self.db.rows(
                f"SELECT run_id, processor, status, skip_reason, SUM({more}) FROM task "
                "WHERE run_id IN :ids AND end_date <> date GROUP BY run_id, processor, status, skip_reason",
                {"ids": list(run_ids)},
            )
        }
        rows = [(*row, int(row[4]) + chunks.get((row[0], row[1], row[2], row[3]), 0)) for row in rows]
        keys = (
            "run_id",
            "processor",
            "status",
            "skip_reason",
            "tasks",
            "first_start",
            "last_finish",
            "rows_affected",
            "days",
        )
        found = [dict(zip(keys, row, strict=True)) for row in rows]
        for row in found:
            row["first_start"] = as_utc(row["first_start"])
            row["last_finish"] = as_utc(row["last_finish"])
        return found

    @staticmethod
    def outcomes_of(stats: Sequence[dict[str, Any]], run_ids: Sequence[int]) -> dict[int, Outcomes]:
        """:meth:`outcomes` of ``run_ids`` from their :meth:`run_processor_stats`."""
        found: dict[int, Outcomes] = {run_id: {} for run_id in run_ids}
        for row in stats:
            if row["run_id"] in found:
                found[row["run_id"]][(row["processor"], row["status"], row["skip_reason"])] = int(
                    row["tasks"]
                )
        return found

    def gated_processors(self, run_id: int) -> frozenset[str]:
        """The processors of the run whose checks are judged as a gate."""
        return frozenset(
            str(r[0]) for r in self.db.rows("SELECT processor FROM gate WHERE run_id = :run", {"run": run_id})
        )

    def task_spans(self, run_id: int) -> dict[str, int]:
        """Per processor of the run whose tasks cover several dates (chunks): the most calendar
        days one of its tasks covers."""
        spans: dict[str, int] = {}
        for processor, first, last in self.db.rows(
            "SELECT processor, date, end_date FROM task WHERE run_id = :run AND end_date <> date",
            {"run": run_id},
        ):
            days = (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days + 1
            spans[processor] = max(spans.get(processor, 1), days)
        return spans

    def pool_sizes(self) -> dict[str, tuple[int, int]]:
        """Each pool's (configured size, effective size) as the processes last recorded them."""
        return {
            str(r[0]): (int(r[1]), int(r[2]))
            for r in self.db.rows("SELECT name, size, effective_size FROM pool ORDER BY name", {})
        }

    def costs(self, run_ids: Sequence[int]) -> dict[int, dict[str, tuple[int, int, int, int]]]:
        """What each run's warehouse jobs cost, by processor: (bytes processed, bytes billed, slot
        ms, tasks that reported a cost); processors whose tasks reported none are left out."""
        found: dict[int, dict[str, tuple[int, int, int, int]]] = {}
        if not run_ids:
            return found
        for run_id, processor, processed, billed, slots, count in self.db.rows(
            "SELECT run_id, processor, SUM(bytes_processed), SUM(bytes_billed), SUM(slot_ms), COUNT(*) FROM task "
            "WHERE run_id IN :ids AND (bytes_processed IS NOT NULL OR bytes_billed IS NOT NULL) "
            "GROUP BY run_id, processor",
            {"ids": list(run_ids)},
        ):
            found.setdefault(int(run_id), {})[str(processor)] = (
                int(processed or 0), int(billed or 0), int(slots or 0), int(count),
            )  # fmt: skip
        return found

    def run_workers(self, run_ids: Sequence[int]) -> dict[int, list[tuple[Worker, int, int]]]:
        """Per run: the processes that worked on it or were started for it, each with the tasks it
        finished and the tasks it runs now in that run."""
        found: dict[int, list[tuple[Worker, int, int]]] = {run_id: [] for run_id in run_ids}
        if not run_ids:
            return found
        counts: dict[tuple[int, str], tuple[int, int]] = {}
        for run_id, holder, done, running in self.db.rows(
            "SELECT run_id, claimed_by, SUM(CASE WHEN status IN ('succeeded', 'failed') THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) FROM task "
            "WHERE run_id IN :ids AND claimed_by IS NOT NULL GROUP BY run_id, claimed_by",
            {"ids": list(run_ids)},
        ):
            counts[(int(run_id), str(holder))] = (int(done or 0), int(running or 0))
        holders = sorted({holder for _, holder in counts})
        workers = from_rows(
            Worker,
            self.db.rows(
                f"SELECT {WORKER_COLUMNS} FROM worker WHERE run_id IN :ids OR id IN :holders ORDER BY started_at",
                {"ids": list(run_ids), "holders": holders or [""]},
            ),
        )
        for worker in workers:
            for run_id in run_ids:
                done, running = counts.get((run_id, worker.id), (0, 0))
                if worker.run_id == run_id or (run_id, worker.id) in counts:
                    found[run_id].append((worker, done, running))
        return found


def _time_param(db: Database, value: dt.datetime) -> Any:
    """A UTC time as the backend stores it: SQLite compares the text SQLAlchemy wrote."""
    value = value.astimezone(dt.UTC)
    if db.dialect == "sqlite":
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def scope_filter(
    db: Database, owner: str, key: str, ids: Any, at: str, since: dt.datetime | None, until: dt.datetime
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (and its parameters) of what belongs to a scope: rows whose ``owner``
    column is one of ``ids`` (a value, or a list for ``IN``; None for none), and rows of no owner
    written (column ``at``) after ``since`` and up to ``until``."""
    where = f"({owner} IS NULL AND {at} <= :until"
    params: dict[str, Any] = {"until": _time_param(db, until)}
    if since is not None:
        where += f" AND {at} > :since"
        params["since"] = _time_param(db, since)
    where += ")"
    if ids is not None and ids != []:
        where = f"({owner} {'IN' if isinstance(ids, list) else '='} :{key} OR {where})"
        params[key] = ids
    return where, params
