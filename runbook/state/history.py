"""Read-only queries behind history, coverage and handoff reports.

Everything here aggregates in SQL on the existing indexes, so these answer in well under a second
with a million task rows (``bench/history_scale.py``). ``Store`` inherits them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlmodel import Session

from runbook.state.models import CheckResult, Event, Note, Run, WorkSession
from runbook.state.tables import CHECK, EVENT, NOTE, RUN, SESSION, TASK


class HistoryQueries:
    """Mixed into :class:`runbook.state.store.Store`; needs ``engine`` and ``session()``."""

    engine: Engine

    def session(self) -> Session:
        raise NotImplementedError

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
