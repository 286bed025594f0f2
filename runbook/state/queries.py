"""Every read of the state store, as plain SQL over a :class:`~runbook.state.connect.Database`.

The same queries serve the read model (a short-lived connection opened by ``runbook status``,
without SQLAlchemy) and the writers (the controller reads its tasks through them). Each answers
in a few statements that aggregate on the indexes, so they stay fast with a million task rows
(``bench/history_scale.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from runbook.kinds import FINISHED_RUN_STATUSES, STEP_FINISHED
from runbook.state import latest
from runbook.state.connect import Database
from runbook.state.records import CheckResult, Event, Note, Run, Task, Worker, WorkSession, columns, from_rows

RUN_COLUMNS = ", ".join(columns(Run))
TASK_COLUMNS = ", ".join(columns(Task))
EVENT_COLUMNS = ", ".join(columns(Event))
CHECK_COLUMNS = ", ".join(columns(CheckResult))
SESSION_COLUMNS = ", ".join(columns(WorkSession))
NOTE_COLUMNS = ", ".join(columns(Note))
WORKER_COLUMNS = ", ".join(columns(Worker))

# (processor, status, skip_reason) -> tasks
Outcomes = dict[tuple[str, str, str | None], int]


class Queries:
    """Reads of runs, tasks, events, check results, sessions and notes."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        where = "(session_id IS NULL AND created_at <= :until"
        params: dict[str, Any] = {"until": _time_param(self.db, until)}
        if since is not None:
            where += " AND created_at > :since"
            params["since"] = _time_param(self.db, since)
        where += ")"
        if session_id is not None:
            where = f"(session_id = :session OR {where})"
            params["session"] = session_id
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

    # -- events -----------------------------------------------------------------------------------

    def events(
        self, *, run_id: int | None = None, since: dt.datetime | None = None, limit: int | None = None
    ) -> list[Event]:
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {}
        if run_id is not None:
            where.append("run_id = :run")
            params["run"] = run_id
        if since is not None:
            where.append("at >= :since")
            params["since"] = _time_param(self.db, since)
        sql = f"SELECT {EVENT_COLUMNS} FROM event WHERE {' AND '.join(where)} ORDER BY at, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return from_rows(Event, self.db.rows(sql, params))

    def events_of_kind(self, run_ids: Sequence[int], kind: str) -> list[Event]:
        """The events of ``kind`` of ``run_ids``, oldest first."""
        if not run_ids:
            return []
        sql = f"SELECT {EVENT_COLUMNS} FROM event WHERE run_id IN :ids AND kind = :kind ORDER BY at, id"
        return from_rows(Event, self.db.rows(sql, {"ids": list(run_ids), "kind": kind}))

    def timeline(
        self,
        run_ids: Sequence[int],
        since: dt.datetime | None,
        until: dt.datetime,
        *,
        exclude_kinds: Sequence[str] = (),
        limit: int,
    ) -> tuple[list[Event], int]:
        """(the newest ``limit`` events of these runs and of no run between since and until, oldest
        first; how many there are in all)."""
        where = "(run_id IS NULL AND at <= :until"
        params: dict[str, Any] = {"until": _time_param(self.db, until)}
        if since is not None:
            where += " AND at > :since"
            params["since"] = _time_param(self.db, since)
        where += ")"
        if run_ids:
            where = f"(run_id IN :runs OR {where})"
            params["runs"] = list(run_ids)
        if exclude_kinds:
            where += " AND kind NOT IN :quiet"
            params["quiet"] = list(exclude_kinds)
        total = self.db.scalar(f"SELECT COUNT(*) FROM event WHERE {where}", params) or 0
        events = from_rows(
            Event,
            self.db.rows(
                f"SELECT {EVENT_COLUMNS} FROM event WHERE {where} ORDER BY at DESC, id DESC LIMIT {int(limit)}",
                params,
            ),
        )
        return events[::-1], int(total)

    # -- check results ----------------------------------------------------------------------------

    def check_results(
        self,
        *,
        processor: str | None = None,
        check_name: str | None = None,
        run_id: int | None = None,
        limit: int | None = None,
    ) -> list[CheckResult]:
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {}
        for column, value in (("processor", processor), ("check_name", check_name), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        sql = f"SELECT {CHECK_COLUMNS} FROM check_result WHERE {' AND '.join(where)} ORDER BY at, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return from_rows(CheckResult, self.db.rows(sql, params))

    def latest_check_results(self, processors: Sequence[str] | None = None) -> list[CheckResult]:
        """The newest result of every (processor, check)."""
        inner = "SELECT MAX(id) FROM check_result"
        params: dict[str, Any] = {}
        if processors is not None:
            inner += " WHERE processor IN :processors"
            params["processors"] = list(processors)
        inner += " GROUP BY processor, check_name"
        sql = f"SELECT {CHECK_COLUMNS} FROM check_result WHERE id IN ({inner}) ORDER BY processor, check_name"
        return from_rows(CheckResult, self.db.rows(sql, params))

    def check_results_overlapping(self, processor: str, start: str, end: str) -> list[CheckResult]:
        """Every result of ``processor``'s checks whose date range touches [start, end], oldest first."""
        return from_rows(
            CheckResult,
            self.db.rows(
                f"SELECT {CHECK_COLUMNS} FROM check_result WHERE processor = :p AND start_date <= :end "
                "AND end_date >= :start ORDER BY id",
                {"p": processor, "start": start, "end": end},
            ),
        )

    def run_check_outcomes(self, run_ids: Sequence[int]) -> dict[int, list[tuple[str, str, bool]]]:
        """Per run: (processor, check, passed) of the newest evaluation of each check in that run."""
        found: dict[int, list[tuple[str, str, bool]]] = {run_id: [] for run_id in run_ids}
        if not run_ids:
            return found
        # A per-date check has one result per window of dates: the newest of each window counts.
        rows = self.db.rows(
            "SELECT run_id, processor, check_name, passed FROM check_result WHERE id IN ("
            "SELECT MAX(id) FROM check_result WHERE run_id IN :ids "
            "GROUP BY run_id, processor, check_name, start_date, end_date"
            ") ORDER BY run_id, processor, check_name",
            {"ids": list(run_ids)},
        )
        verdicts: dict[tuple[int, str, str], bool] = {}
        for run_id, processor, name, passed in rows:
            key = (int(run_id), str(processor), str(name))
            verdicts[key] = verdicts.get(key, True) and bool(passed)
        for (run_id, processor, name), passed in verdicts.items():
            found[run_id].append((processor, name, passed))
        return found

    # -- sessions and notes -----------------------------------------------------------------------

    def get_session(self, session_id: int) -> WorkSession | None:
        found = from_rows(
            WorkSession,
            self.db.rows(f"SELECT {SESSION_COLUMNS} FROM work_session WHERE id = :id", {"id": session_id}),
        )
        return found[0] if found else None

    def latest_session(self) -> WorkSession | None:
        found = from_rows(
            WorkSession, self.db.rows(f"SELECT {SESSION_COLUMNS} FROM work_session ORDER BY id DESC LIMIT 1")
        )
        return found[0] if found else None

    def open_session(self) -> WorkSession | None:
        found = from_rows(
            WorkSession,
            self.db.rows(
                f"SELECT {SESSION_COLUMNS} FROM work_session WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1"
            ),
        )
        return found[0] if found else None

    def previous_session_end(self, before_id: int | None = None) -> dt.datetime | None:
        """When the newest ended session (older than ``before_id`` if given) ended."""
        from runbook.formatting import as_utc

        sql = "SELECT MAX(ended_at) FROM work_session WHERE ended_at IS NOT NULL"
        params: dict[str, Any] = {}
        if before_id is not None:
            sql += " AND id < :before"
            params["before"] = before_id
        return as_utc(self.db.scalar(sql, params))

    def scoped_notes(
        self, session_id: int | None, since: dt.datetime | None, until: dt.datetime
    ) -> list[Note]:
        """Notes of a session, with those written outside any session between since and until."""
        where = "(session_id IS NULL AND at <= :until"
        params: dict[str, Any] = {"until": _time_param(self.db, until)}
        if since is not None:
            where += " AND at > :since"
            params["since"] = _time_param(self.db, since)
        where += ")"
        if session_id is not None:
            where = f"(session_id = :session OR {where})"
            params["session"] = session_id
        return from_rows(
            Note, self.db.rows(f"SELECT {NOTE_COLUMNS} FROM note WHERE {where} ORDER BY at, id", params)
        )


def _time_param(db: Database, value: dt.datetime) -> Any:
    """A UTC time as the backend stores it: SQLite compares the text SQLAlchemy wrote."""
    value = value.astimezone(dt.UTC)
    if db.dialect == "sqlite":
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


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
