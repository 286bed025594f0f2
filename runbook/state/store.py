"""The state store: the only module that writes SQL against runbook's own database.

Hot paths (claiming and finishing tasks, recording a step's PID, heartbeats) run statements
compiled once, on a connection each thread keeps open (``statements.py``), so the controller's
cost per date stays well under a millisecond (``bench/overhead.py``). Claims are compare-and-set
updates (``UPDATE task SET status='running' ... WHERE id=:id AND status='pending'``) that hold on
SQLite and PostgreSQL alike, with a lease that a live controller extends by heartbeat: a second
controller sharing the database can only take a task whose lease has run out.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlmodel import Session

from runbook.state import statements
from runbook.state.db import ensure_schema, make_engine
from runbook.state.models import (
    ACTIVE_RUN_STATUSES,
    CheckResult,
    Event,
    Note,
    Run,
    Task,
    WorkSession,
    utcnow,
)

RUN = Run.__table__  # type: ignore[attr-defined]
TASK = Task.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]
CHECK = CheckResult.__table__  # type: ignore[attr-defined]
SESSION = WorkSession.__table__  # type: ignore[attr-defined]
ERROR_TAIL_CHARS = 4000


class Store:
    """Reads and writes runs, tasks, events, check results, sessions and notes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._hot = statements.HotConnections(engine)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Open the store at ``url``; an empty database is created at head, an old one refused."""
        engine = make_engine(url)
        if migrate:
            try:
                ensure_schema(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine)

    def close(self) -> None:
        self._hot.close()
        self.engine.dispose()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- runs -----------------------------------------------------------------------------------

    def create_run(self, **fields: Any) -> Run:
        run = Run(created_at=utcnow(), **fields)
        with self.session() as session:
            session.add(run)
            session.commit()
            session.refresh(run)
        return run

    def get_run(self, run_id: int) -> Run | None:
        with self.session() as session:
            return session.get(Run, run_id)

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
        query = select(Run).order_by(RUN.c.id.desc())
        if statuses:
            query = query.where(RUN.c.status.in_(statuses))
        if since is not None:
            query = query.where(RUN.c.created_at >= since)
        if overlapping is not None:
            query = query.where(RUN.c.start_date <= overlapping[1], RUN.c.end_date >= overlapping[0])
        with self.session() as session:
            runs = list(session.scalars(query))
        if processor is not None:
            runs = [run for run in runs if processor in run.processors]
        return runs[:limit] if limit else runs

    def active_runs(self) -> list[Run]:
        return self.list_runs(statuses=ACTIVE_RUN_STATUSES, limit=None)

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(RUN).where(RUN.c.id == run_id).values(**fields))

    def take_run(self, run_id: int, *, controller_id: str, pid: int, host: str, log_path: str) -> bool:
        """Make this controller the owner of a queued or interrupted run; False if another owns it."""
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(RUN)
                .where(RUN.c.id == run_id, RUN.c.status.in_(("queued", "interrupted")))
                .values(
                    status="running",
                    controller_id=controller_id,
                    pid=pid,
                    host=host,
                    log_path=log_path,
                    heartbeat_at=now,
                    started_at=func.coalesce(RUN.c.started_at, now),
                    finished_at=None,
                    error=None,
                )
            )
            return result.rowcount == 1

    def heartbeat(self, run_id: int, controller_id: str, lease_until: dt.datetime) -> None:
        """Prove the controller is alive and extend the leases of the tasks it is running."""
        params = {"p_run": run_id, "p_owner": controller_id, "p_now": utcnow(), "p_lease": lease_until}
        self._hot.run((statements.BEAT_RUN, params), (statements.BEAT_TASKS, params))

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.update_run(run_id, status=status, error=error, finished_at=utcnow())

    def mark_interrupted(self, run_id: int, reason: str) -> list[Task]:
        """Mark a run interrupted and return its in-flight tasks to pending; return those tasks."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(TASK).where(TASK.c.run_id == run_id, TASK.c.status == "running")).all()
            conn.execute(
                update(TASK)
                .where(TASK.c.run_id == run_id, TASK.c.status == "running")
                .values(
                    status="pending",
                    claimed_by=None,
                    lease_until=None,
                    not_before=None,
                    # The interrupted attempt does not count against the task's retries.
                    max_attempts=TASK.c.max_attempts + 1,
                )
            )
            conn.execute(
                update(RUN)
                .where(RUN.c.id == run_id)
                .values(status="interrupted", error=reason, finished_at=utcnow(), controller_id=None)
            )
        return [Task.model_validate(dict(row._mapping)) for row in rows]

    # -- tasks ----------------------------------------------------------------------------------

    def add_tasks(self, run_id: int, rows: Iterable[dict[str, Any]]) -> None:
        """Insert planned tasks in bulk (one statement, many parameter sets)."""
        batch = [{"run_id": run_id, **row} for row in rows]
        if batch:
            with self.engine.begin() as conn:
                conn.execute(insert(TASK), batch)

    def tasks(self, run_id: int, *, statuses: Sequence[str] | None = None) -> list[Task]:
        query = select(Task).where(TASK.c.run_id == run_id).order_by(TASK.c.seq, TASK.c.id)
        if statuses:
            query = query.where(TASK.c.status.in_(statuses))
        with self.session() as session:
            return list(session.scalars(query))

    def claim_task(
        self,
        task_id: int,
        controller_id: str,
        lease_until: dt.datetime,
        code_version: str | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> bool:
        """Compare-and-set a pending task (or one whose lease expired) to running for this controller."""
        params = {
            "p_id": task_id,
            "p_now": now or utcnow(),
            "p_owner": controller_id,
            "p_lease": lease_until,
            "p_version": code_version,
        }
        return self._hot.run((statements.CLAIM_TASK, params)) == [1]

    def set_task_pid(self, task_id: int, pid: int) -> None:
        self._hot.run((statements.SET_TASK_PID, {"p_id": task_id, "p_pid": pid}))

    def finish_task(
        self,
        task_id: int,
        status: str,
        *,
        started_at: dt.datetime | None,
        exit_code: int | None = None,
        error: str | None = None,
        rows_affected: int | None = None,
        retry_at: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Record a finished attempt; with ``retry_at`` the task goes back to pending until then."""
        now = now or utcnow()
        params = {
            "p_id": task_id,
            "p_status": "pending" if retry_at is not None else status,
            "p_now": now,
            "p_duration": (now - started_at).total_seconds() if started_at else None,
            "p_exit_code": exit_code,
            "p_error": error[-ERROR_TAIL_CHARS:] if error else None,
            "p_rows": rows_affected,
            "p_retry_at": retry_at,
        }
        self._hot.run((statements.FINISH_TASK, params))

    def set_tasks_status(
        self,
        task_ids: Sequence[int],
        status: str,
        reason: str | None = None,
        *,
        skip_reason: str | None = None,
    ) -> None:
        """Mark many tasks at once (blocked by a gate, cancelled by a stop, ...)."""
        if not task_ids:
            return
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "lease_until": None}
        if skip_reason is not None:
            values["skip_reason"] = skip_reason
        if reason is not None:
            values["error_tail"] = reason
        with self.engine.begin() as conn:
            for start in range(0, len(task_ids), 500):
                chunk = list(task_ids[start : start + 500])
                conn.execute(update(TASK).where(TASK.c.id.in_(chunk)).values(**values))

    def reopen_tasks(self, run_id: int) -> int:
        """Return failed, blocked and cancelled tasks of a run to pending, each with fresh retries."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(TASK)
                .where(TASK.c.run_id == run_id, TASK.c.status.in_(("failed", "blocked", "cancelled")))
                .values(
                    status="pending",
                    max_attempts=TASK.c.attempt + TASK.c.max_attempts,
                    not_before=None,
                    lease_until=None,
                    claimed_by=None,
                )
            )
            return result.rowcount

    def succeeded_ranges(self, processor: str, start: str, end: str) -> list[tuple[str, str, str | None]]:
        """(date, end_date, code_version) of every succeeded task of ``processor`` touching [start, end]."""
        query = (
            select(TASK.c.date, TASK.c.end_date, TASK.c.code_version)
            .where(
                TASK.c.processor == processor,
                TASK.c.status == "succeeded",
                TASK.c.date <= end,
                TASK.c.end_date >= start,
            )
            .order_by(TASK.c.id)
        )  # oldest first: callers let the newest build of a date win
        with self.engine.connect() as conn:
            return [(row[0], row[1], row[2]) for row in conn.execute(query)]

    def progress(self, run_ids: Sequence[int]) -> dict[int, Counter[str]]:
        """Task counts by status for each run."""
        found: dict[int, Counter[str]] = {run_id: Counter() for run_id in run_ids}
        if not run_ids:
            return found
        query = (
            select(TASK.c.run_id, TASK.c.status, func.count())
            .where(TASK.c.run_id.in_(list(run_ids)))
            .group_by(TASK.c.run_id, TASK.c.status)
        )
        with self.engine.connect() as conn:
            for run_id, status, count in conn.execute(query):
                found[run_id][status] = count
        return found

    def processor_progress(self, run_id: int) -> dict[str, Counter[str]]:
        query = (
            select(TASK.c.processor, TASK.c.status, func.count())
            .where(TASK.c.run_id == run_id)
            .group_by(TASK.c.processor, TASK.c.status)
        )
        found: dict[str, Counter[str]] = {}
        with self.engine.connect() as conn:
            for processor, status, count in conn.execute(query):
                found.setdefault(processor, Counter())[status] = count
        return found

    def finished_window(self, run_id: int) -> tuple[int, float]:
        """(tasks finished by a step, their summed seconds since the first start): for rates."""
        query = select(func.count(), func.min(TASK.c.started_at), func.max(TASK.c.finished_at)).where(
            TASK.c.run_id == run_id, TASK.c.status.in_(("succeeded", "failed"))
        )
        with self.engine.connect() as conn:
            count, first, last = conn.execute(query).one()
        if not count or first is None or last is None:
            return 0, 0.0
        return count, max((last - first).total_seconds(), 0.0)

    # -- events ---------------------------------------------------------------------------------

    def add_event(
        self,
        kind: str,
        message: str = "",
        *,
        run_id: int | None = None,
        processor: str | None = None,
        date: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(EVENT).values(
                    run_id=run_id,
                    at=utcnow(),
                    kind=kind,
                    processor=processor,
                    date=date,
                    message=message,
                    data=data or {},
                )
            )

    def events(
        self, *, run_id: int | None = None, since: dt.datetime | None = None, limit: int | None = None
    ) -> list[Event]:
        query = select(Event).order_by(EVENT.c.at, EVENT.c.id)
        if run_id is not None:
            query = query.where(EVENT.c.run_id == run_id)
        if since is not None:
            query = query.where(EVENT.c.at >= since)
        if limit:
            query = query.limit(limit)
        with self.session() as session:
            return list(session.scalars(query))

    # -- checks, sessions, notes ----------------------------------------------------------------

    def add_check_result(self, result: CheckResult) -> CheckResult:
        if result.at is None:
            result.at = utcnow()
        with self.session() as session:
            session.add(result)
            session.commit()
            session.refresh(result)
        return result

    def check_results(
        self,
        *,
        processor: str | None = None,
        check_name: str | None = None,
        run_id: int | None = None,
        limit: int | None = None,
    ) -> list[CheckResult]:
        query = select(CheckResult).order_by(CHECK.c.at, CHECK.c.id)
        if processor is not None:
            query = query.where(CHECK.c.processor == processor)
        if check_name is not None:
            query = query.where(CHECK.c.check_name == check_name)
        if run_id is not None:
            query = query.where(CHECK.c.run_id == run_id)
        if limit:
            query = query.limit(limit)
        with self.session() as session:
            return list(session.scalars(query))

    def open_session(self) -> WorkSession | None:
        query = select(WorkSession).where(SESSION.c.ended_at.is_(None)).order_by(SESSION.c.id.desc())
        with self.session() as session:
            return session.scalars(query).first()

    def add(self, row: WorkSession | Note) -> Any:
        with self.session() as session:
            session.add(row)
            session.commit()
            session.refresh(row)
        return row

    # == history, coverage and handoff (read-only queries; runbook/handoff, runbook/coverage) ====
    # Everything here aggregates in SQL on the existing indexes, so these answer in well under a
    # second with a million task rows (bench/history_scale.py).

    def latest_by_date(self, processor: str, start: str, end: str) -> list[tuple[Any, ...]]:
        """The tasks that say what state ``processor``'s dates in [start, end] are in.

        Tuples (id, run_id, date, end_date, status, skip_reason, code_version, attempt, exit_code,
        rows_affected, finished_at) of the newest succeeded, failed, blocked and skipped task per
        first date; on SQLite only the newest build, a newer failed or blocked attempt, and the
        newest skip of a date never built, read by a loose index scan (a few index seeks per date,
        however often the date was rerun).
        """
        columns = [
            TASK.c.id, TASK.c.run_id, TASK.c.date, TASK.c.end_date, TASK.c.status, TASK.c.skip_reason,
            TASK.c.code_version, TASK.c.attempt, TASK.c.exit_code, TASK.c.rows_affected, TASK.c.finished_at,
        ]  # fmt: skip
        params = {"processor": processor, "start": start, "end": end}
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy import text

            # finished_at stays as SQLite's text (see as_utc): converting every row costs more
            # than the query.
            query: Any = text(_LATEST_BY_DATE_SQLITE).bindparams(**params).columns(*columns[:-1])
        else:
            latest = (
                select(func.max(TASK.c.id).label("id"))
                .where(
                    TASK.c.processor == processor,
                    TASK.c.date >= start,
                    TASK.c.date <= end,
                    TASK.c.status.in_(LATEST_STATUSES),
                )
                .group_by(TASK.c.date, TASK.c.status)
                .subquery()
            )
            query = select(*columns).join(latest, TASK.c.id == latest.c.id)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def run_date_span(self) -> tuple[str | None, str | None]:
        """The first and last date any run ever covered."""
        with self.engine.connect() as conn:
            first, last = conn.execute(select(func.min(RUN.c.start_date), func.max(RUN.c.end_date))).one()
        return first, last

    def scoped_runs(
        self, session_id: int | None, since: dt.datetime | None, until: dt.datetime, *, limit: int
    ) -> tuple[list[Run], int]:
        """(the newest ``limit`` runs, how many there are) of a session and of no session between
        ``since`` and ``until``."""
        outside = and_(RUN.c.session_id.is_(None), RUN.c.created_at <= until)
        if since is not None:
            outside = and_(outside, RUN.c.created_at > since)
        where = or_(RUN.c.session_id == session_id, outside) if session_id is not None else outside
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(RUN).where(where)) or 0
            runs = list(session.scalars(select(Run).where(where).order_by(RUN.c.id.desc()).limit(limit)))
        return runs, total

    def run_processor_stats(self, run_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Per run, processor and status: tasks, first start, last finish, rows affected."""
        if not run_ids:
            return []
        query = (
            select(
                TASK.c.run_id,
                TASK.c.processor,
                TASK.c.status,
                func.count().label("tasks"),
                func.min(TASK.c.started_at).label("first_start"),
                func.max(TASK.c.finished_at).label("last_finish"),
                func.sum(TASK.c.rows_affected).label("rows_affected"),
            )
            .where(TASK.c.run_id.in_(list(run_ids)))
            .group_by(TASK.c.run_id, TASK.c.processor, TASK.c.status)
            .order_by(TASK.c.run_id, TASK.c.processor, TASK.c.status)
        )
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        for row in rows:  # aggregates bypass the column type: make SQLite's strings UTC datetimes
            row["first_start"] = as_utc(row["first_start"])
            row["last_finish"] = as_utc(row["last_finish"])
        return rows

    def task_errors(self, task_ids: Sequence[int]) -> dict[int, str | None]:
        if not task_ids:
            return {}
        query = select(TASK.c.id, TASK.c.error_tail).where(TASK.c.id.in_(list(task_ids)))
        with self.engine.connect() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}

    def latest_check_results(self, processors: Sequence[str] | None = None) -> list[CheckResult]:
        """The newest result of every (processor, check)."""
        latest = select(func.max(CHECK.c.id)).group_by(CHECK.c.processor, CHECK.c.check_name)
        if processors is not None:
            latest = latest.where(CHECK.c.processor.in_(list(processors)))
        query = (
            select(CheckResult).where(CHECK.c.id.in_(latest)).order_by(CHECK.c.processor, CHECK.c.check_name)
        )
        with self.session() as session:
            return list(session.scalars(query))

    def check_results_overlapping(self, processor: str, start: str, end: str) -> list[CheckResult]:
        """Every result of ``processor``'s checks whose date range touches [start, end], oldest first."""
        query = (
            select(CheckResult)
            .where(CHECK.c.processor == processor, CHECK.c.start_date <= end, CHECK.c.end_date >= start)
            .order_by(CHECK.c.id)
        )
        with self.session() as session:
            return list(session.scalars(query))

    def run_check_outcomes(self, run_ids: Sequence[int]) -> dict[int, list[tuple[str, str, bool]]]:
        """Per run: (processor, check, passed) of the newest evaluation of each check in that run."""
        found: dict[int, list[tuple[str, str, bool]]] = {run_id: [] for run_id in run_ids}
        if not run_ids:
            return found
        latest = (
            select(func.max(CHECK.c.id))
            .where(CHECK.c.run_id.in_(list(run_ids)))
            .group_by(CHECK.c.run_id, CHECK.c.processor, CHECK.c.check_name)
        )
        query = (
            select(CHECK.c.run_id, CHECK.c.processor, CHECK.c.check_name, CHECK.c.passed)
            .where(CHECK.c.id.in_(latest))
            .order_by(CHECK.c.run_id, CHECK.c.processor, CHECK.c.check_name)
        )
        with self.engine.connect() as conn:
            for run_id, processor, name, passed in conn.execute(query):
                found[run_id].append((processor, name, bool(passed)))
        return found

    def run_outcomes(self, run_ids: Sequence[int]) -> dict[int, dict[str, Counter[str]]]:
        """Per run and processor: task counts by status."""
        found: dict[int, dict[str, Counter[str]]] = {run_id: {} for run_id in run_ids}
        if not run_ids:
            return found
        query = (
            select(TASK.c.run_id, TASK.c.processor, TASK.c.status, func.count())
            .where(TASK.c.run_id.in_(list(run_ids)))
            .group_by(TASK.c.run_id, TASK.c.processor, TASK.c.status)
        )
        with self.engine.connect() as conn:
            for run_id, processor, status, count in conn.execute(query):
                found[run_id].setdefault(processor, Counter())[status] = count
        return found

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
        unattached = and_(EVENT.c.run_id.is_(None), EVENT.c.at <= until)
        if since is not None:
            unattached = and_(unattached, EVENT.c.at > since)
        where = or_(EVENT.c.run_id.in_(list(run_ids)), unattached) if run_ids else unattached
        if exclude_kinds:
            where = and_(where, EVENT.c.kind.not_in(list(exclude_kinds)))
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(EVENT).where(where)) or 0
            query = select(Event).where(where).order_by(EVENT.c.at.desc(), EVENT.c.id.desc()).limit(limit)
            events = list(session.scalars(query))
        return events[::-1], total

    def get_session(self, session_id: int) -> WorkSession | None:
        with self.session() as session:
            return session.get(WorkSession, session_id)

    def latest_session(self) -> WorkSession | None:
        with self.session() as session:
            return session.scalars(select(WorkSession).order_by(SESSION.c.id.desc())).first()

    def previous_session_end(self, before_id: int | None = None) -> dt.datetime | None:
        """When the newest ended session (older than ``before_id`` if given) ended."""
        query = select(func.max(SESSION.c.ended_at)).where(SESSION.c.ended_at.is_not(None))
        if before_id is not None:
            query = query.where(SESSION.c.id < before_id)
        with self.engine.connect() as conn:
            return as_utc(conn.execute(query).scalar())

    def end_session(self, session_id: int, ended_at: dt.datetime, handoff_path: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(SESSION)
                .where(SESSION.c.id == session_id)
                .values(ended_at=ended_at, handoff_path=handoff_path)
            )

    def scoped_notes(
        self, session_id: int | None, since: dt.datetime | None, until: dt.datetime
    ) -> list[Note]:
        """Notes of a session, with those written outside any session between since and until."""
        outside = and_(NOTE.c.session_id.is_(None), NOTE.c.at <= until)
        if since is not None:
            outside = and_(outside, NOTE.c.at > since)
        where = or_(NOTE.c.session_id == session_id, outside) if session_id is not None else outside
        with self.session() as session:
            return list(session.scalars(select(Note).where(where).order_by(NOTE.c.at, NOTE.c.id)))


NOTE = Note.__table__  # type: ignore[attr-defined]


LATEST_STATUSES = ("succeeded", "failed", "blocked", "skipped")

# The loose index scan behind Store.latest_by_date on SQLite: walk the distinct first dates of a
# processor through ix_task_processor_date (one seek each), take the newest task id per date and
# status with one more seek each, and read only the rows that matter: the newest build, a newer
# failed or blocked attempt, and the newest skip of a date never built.
_LATEST_BY_DATE_SQLITE = """
WITH RECURSIVE dates(day) AS (
    SELECT (SELECT MIN(date) FROM task WHERE processor = :processor AND date >= :start AND date <= :end)
    UNION ALL
    SELECT (SELECT MIN(date) FROM task WHERE processor = :processor AND date > dates.day AND date <= :end)
    FROM dates WHERE dates.day IS NOT NULL
),
latest AS MATERIALIZED (
    SELECT
        (SELECT MAX(id) FROM task WHERE processor = :processor AND date = day AND status = 'succeeded') AS built,
        (SELECT MAX(id) FROM task WHERE processor = :processor AND date = day AND status = 'failed') AS failed,
        (SELECT MAX(id) FROM task WHERE processor = :processor AND date = day AND status = 'blocked') AS blocked,
        (SELECT MAX(id) FROM task WHERE processor = :processor AND date = day AND status = 'skipped') AS skipped
    FROM dates WHERE day IS NOT NULL
)
SELECT task.id, task.run_id, task.date, task.end_date, task.status, task.skip_reason, task.code_version,
       task.attempt, task.exit_code, task.rows_affected, task.finished_at
FROM latest JOIN task ON task.id = latest.built
    OR (task.id = MAX(COALESCE(latest.failed, 0), COALESCE(latest.blocked, 0)) AND task.id > COALESCE(latest.built, 0))
    OR (task.id = latest.skipped AND latest.built IS NULL)
"""


def as_utc(value: Any) -> dt.datetime | None:
    """A UTC datetime from what an aggregate returns (a string on SQLite, a datetime elsewhere)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
