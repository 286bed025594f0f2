"""Reads of the journal kept around the tasks, as plain SQL over the state store.

:class:`JournalQueries` answers for events (of a run, of a kind, the timeline of a session),
check results (filtered, the newest of each check, of a date range, per run) and work sessions
with their notes. It is one of the mixins :class:`~runbook.state.queries.Queries` combines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from runbook.state.connect import Database
from runbook.state.records import CheckResult, Event, Note, WorkSession, columns, from_rows
from runbook.state.run_queries import _time_param, scope_filter

EVENT_COLUMNS = ", ".join(columns(Event))
CHECK_COLUMNS = ", ".join(columns(CheckResult))
SESSION_COLUMNS = ", ".join(columns(WorkSession))
NOTE_COLUMNS = ", ".join(columns(Note))


class JournalQueries:
    """Reads of events, check results, sessions and notes."""

    db: Database

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
        where, params = scope_filter(self.db, "run_id", "runs", list(run_ids), "at", since, until)
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
        where, params = scope_filter(self.db, "session_id", "session", session_id, "at", since, until)
        return from_rows(
            Note, self.db.rows(f"SELECT {NOTE_COLUMNS} FROM note WHERE {where} ORDER BY at, id", params)
        )
