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

from sqlalchemy import Engine, func, insert, select, update
from sqlmodel import Session

from runbook.state import statements
from runbook.state.db import ensure_schema, make_engine
from runbook.state.history import HistoryQueries, as_utc
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
from runbook.state.tables import CHECK, EVENT, RUN, SESSION, TASK

ERROR_TAIL_CHARS = 4000


class Store(HistoryQueries):
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


__all__ = ["Store", "as_utc"]
