"""The state store: every write to runbook's own database, and the reads behind it.

Statements are plain SQL run through :class:`~runbook.state.connect.Database` on one connection
per thread (no ORM on the hot path), so the controller's cost per date stays well under a
millisecond (``bench/overhead.py``). State changes that others may race are single conditional
writes: a task is claimed by ``UPDATE ... WHERE id = :id AND status = 'pending'`` and the claim
only counts when one row changed; a lease that a live controller extends by heartbeat means a
second controller sharing the database can only take a task whose lease has run out.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any, TypeVar

from runbook.clock import utcnow
from runbook.errors import StateError
from runbook.formatting import as_utc
from runbook.kinds import RunStatus, TaskStatus
from runbook.state import latest
from runbook.state.adoption import Adoptions
from runbook.state.connect import (
    Array,
    Database,
    DatabaseFault,
    Json,
    connect,
    read_revision,
    redact_url,
    require_head,
)
from runbook.state.graph import TaskGraph
from runbook.state.outbox import Outbox
from runbook.state.ownership import RunOwnership
from runbook.state.queries import Queries
from runbook.state.queue import WorkQueue
from runbook.state.records import CheckDate, CheckResult, Note, Run, Task, WorkSession, columns

CHECK_DATE_COLUMNS = ", ".join(columns(CheckDate))

ERROR_TAIL_CHARS = 4000
_T = TypeVar("_T")


_INTEGER_COLUMNS = frozenset(
    {"seq", "attempt", "max_attempts", "run_id", "waits", "pid", "exit_code", "rows_affected"}
)


def _insert_arrays(
    db: Database, table: str, names: Sequence[str], batch: Sequence[Mapping[str, Any]]
) -> bool:
    """PostgreSQL: insert ``batch`` in one statement, one array per column (unnest), instead of a
    statement per row; False (nothing done) when a value is not a plain text or integer."""
    arrays: dict[str, Array] = {}
    for name in names:
        items = [row.get(name) for row in batch]
        if name in _INTEGER_COLUMNS:
            if not all(
                item is None or (isinstance(item, int) and not isinstance(item, bool)) for item in items
            ):
                return False
        elif all(item is None or isinstance(item, str) for item in items):
            items = [None if item is None else str(item) for item in items]  # str enums as their values
        else:
            return False
        arrays[name] = Array(items)
    casts = ", ".join(
        f"CAST(:{name} AS {'integer' if name in _INTEGER_COLUMNS else 'text'}[])" for name in names
    )
    db.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({casts})", arrays)
    return True


class Store(Queries, RunOwnership, TaskGraph, WorkQueue, Outbox, Adoptions):
    """Reads (inherited from :class:`Queries`) and writes of one workspace's state store.

    Each thread gets its own connection (SQLite connections must not be shared, and a write
    transaction belongs to one thread); ``db`` is the calling thread's.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: list[tuple[threading.Thread, Database]] = []
        self.broken: str | None = None  # why this process must not touch a SQLite store any more

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Open the store at ``url``: an empty database is created at head, an old one refused."""
        store = cls(url)
        if migrate:
            try:
                store._ensure_schema()
            except BaseException:
                store.close()
                raise
        return store

    def _ensure_schema(self) -> None:
        db = connect(self.url, create=True)
        assert db is not None
        try:
            revision = read_revision(db)
        finally:
            db.close()
        if revision is None:
            from runbook.state.migrate import create_schema

            create_schema(self.url)
        else:
            require_head(revision, self.url)

    @property
    def db(self) -> Database:  # type: ignore[override]
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.url, create=True)
            assert db is not None
            self._local.db = db
            with self._lock:
                # Connections of threads that have ended are closed (gate threads come and go).
                ended = [other for thread, other in self._held if not thread.is_alive()]
                self._held = [(t, d) for t, d in self._held if t.is_alive()]
                self._held.append((threading.current_thread(), db))
            for other in ended:
                other.close()
        return db

    def close(self) -> None:
        """Close every connection this store opened (in any thread); a SQLite store whose files
        became unwritable is left alone (closing would write to them: see ``ensure_writable``)."""
        if self.broken:
            return
        with self._lock:
            held, self._held = self._held, []
        for _, db in held:
            db.close()
        self._local = threading.local()

    def _write(self, action: Callable[[Database], _T]) -> _T:
        """Run one write; a failure is one StateError line and a dropped connection is replaced
        (such an error is ``transient``: the next write may succeed)."""
        if self.broken:
            raise StateError(self.broken)
        db = self.db
        try:
            db.ensure_writable()
        except StateError as unwritable:
            self.broken = unwritable.message
            raise
        try:
            return action(db)
        except DatabaseFault as fault:
            if fault.disconnected or db.dialect == "postgresql":
                self._drop(db)
            refused = StateError(
                f"state DB {redact_url(self.url)} refused a write: {fault.message.split(': ', 1)[-1]}"
            )
            refused.transient = db.dialect == "postgresql" and fault.disconnected
            raise refused from fault

    def _drop(self, db: Database) -> None:
        db.close()
        with self._lock:
            self._held = [(t, d) for t, d in self._held if d is not db]
        if getattr(self._local, "db", None) is db:
            self._local.db = None

    @contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator[Database]:
        """A write transaction on this thread's connection (see :meth:`Database.transaction`)."""
        db = self.db
        try:
            with db.transaction(exclusive=exclusive):
                yield db
        except DatabaseFault as fault:
            self._drop(db)
            raise StateError(
                f"state DB {redact_url(self.url)} refused a write: {fault.message.split(': ', 1)[-1]}"
            ) from fault

    # -- runs -------------------------------------------------------------------------------------

    def create_run(self, *, db: Database | None = None, **fields: Any) -> Run:
        """Insert a run (status ``queued`` unless given) and return it."""
        values: dict[str, Any] = {
            "status": RunStatus.QUEUED,
            "options": {},
            "versions": {},
            "workers": 1,
            "created_at": utcnow(),
            **fields,
        }
        for key in ("processors", "options", "versions"):
            values[key] = Json(values.get(key) or ([] if key == "processors" else {}))
        names = list(values)
        sql = (
            f"INSERT INTO run ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) RETURNING id"
        )
        run_id = self._write(lambda default: (db or default).insert(sql, values))
        run = self.get_run(run_id) if db is None else _run_from(run_id, values)
        assert run is not None
        return run

    def update_run(self, run_id: int, **fields: Any) -> None:
        values = {
            key: Json(value) if key in ("processors", "options", "versions") else value
            for key, value in fields.items()
        }
        assignments = ", ".join(f"{key} = :{key}" for key in values)
        self._write(
            lambda db: db.execute(
                f"UPDATE run SET {assignments} WHERE id = :run_id", {**values, "run_id": run_id}
            )
        )

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.update_run(run_id, status=status, error=error, finished_at=utcnow())

    def mark_interrupted(self, run_id: int, reason: str) -> list[Task]:
        """Mark a run interrupted and return its in-flight tasks to pending; return those tasks."""

        def interrupt(db: Database) -> list[Task]:
            with db.transaction(exclusive=True):
                running = Queries(db).tasks(run_id, statuses=[TaskStatus.RUNNING])
                # The interrupted attempt does not count against the task's retries.
                db.execute(
                    "UPDATE task SET status = 'pending', claimed_by = NULL, lease_until = NULL, not_before = NULL, "
                    "max_attempts = max_attempts + 1 WHERE run_id = :run AND status = 'running'",
                    {"run": run_id},
                )
                db.execute(
                    "UPDATE run SET status = 'interrupted', error = :reason, finished_at = :now, controller_id = NULL "
                    "WHERE id = :run",
                    {"run": run_id, "reason": reason, "now": utcnow()},
                )
            return running

        return self._write(interrupt)

    # -- tasks ------------------------------------------------------------------------------------

    def add_tasks(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert planned tasks in bulk: one transaction, many parameter sets per statement,
        ``rows`` read a batch at a time."""
        defaults = {"seq": 0, "status": TaskStatus.PENDING, "attempt": 0, "max_attempts": 1, "skip_reason": None,
                    "code_version": None}  # fmt: skip
        names = [*defaults, "run_id"]
        stream = iter(rows)

        def insert(db: Database) -> None:
            sql = ""
            with db.transaction():
                while batch := [{**defaults, **row, "run_id": run_id} for row in islice(stream, 5000)]:
                    if not sql:
                        names.extend(name for name in batch[0] if name not in names)
                        sql = f"INSERT INTO task ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
                    if not (db.dialect == "postgresql" and _insert_arrays(db, "task", names, batch)):
                        db.executemany(sql, batch)
                db.execute(latest.OF_RUN, {"run": run_id})  # dates skipped at planning

        self._write(insert)

    def set_tasks_status(
        self,
        task_ids: Sequence[int],
        status: str,
        reason: str | None = None,
        *,
        skip_reason: str | None = None,
    ) -> None:
        """Mark many tasks at once (blocked by a gate, skipped downstream, ...)."""
        if not task_ids:
            return
        sets = "status = :status, finished_at = :now, lease_until = NULL"
        if skip_reason is not None:
            sets += ", skip_reason = :skip"
        if reason is not None:
            sets += ", error_tail = :reason"
        params = {"status": status, "now": utcnow(), "skip": skip_reason, "reason": reason}

        def mark(db: Database) -> None:
            with db.transaction():
                for start in range(0, len(task_ids), 500):
                    chunk = list(task_ids[start : start + 500])
                    db.execute(f"UPDATE task SET {sets} WHERE id IN :ids", {**params, "ids": chunk})
                    db.execute(latest.OF_TASKS, {"ids": chunk})

        self._write(mark)

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
        params = {
            "run": run_id, "at": utcnow(), "kind": kind, "processor": processor, "date": date,
            "message": message, "data": Json(data or {}),
        }  # fmt: skip
        self._write(
            lambda db: db.execute(
                "INSERT INTO event (run_id, at, kind, processor, date, message, data) "
                "VALUES (:run, :at, :kind, :processor, :date, :message, :data)",
                params,
            )
        )

    def add_check_result(self, dates: Sequence[Mapping[str, Any]] = (), **fields: Any) -> CheckResult:
        """Store one check result and, for a per-date check, one ``check_date`` row per date
        judged (``dates``: {date, passed, metrics, conditions, error}), in one transaction."""
        values = {"at": utcnow(), "query": "", **fields}
        for key in ("metrics", "conditions", "params"):
            values[key] = Json(values.get(key) or ([] if key == "conditions" else {}))
        for key in ("failed_dates", "samples", "changed_dates"):
            if values.get(key) is not None:
                values[key] = Json(values[key])
        names = list(values)
        sql = f"INSERT INTO check_result ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) RETURNING id"

        def add(db: Database) -> int:
            with db.transaction():
                result_id = int(db.insert(sql, values))
                for day in dates:
                    db.execute(
                        "INSERT INTO check_date (result_id, run_id, processor, check_name, date, passed, metrics, "
                        "conditions, error, at) VALUES (:result, :run, :p, :c, :date, :passed, :metrics, "
                        ":conditions, :error, :at)",
                        {"result": result_id, "run": values.get("run_id"), "p": values["processor"],
                         "c": values["check_name"], "date": day["date"], "passed": bool(day["passed"]),
                         "metrics": Json(day.get("metrics") or {}), "conditions": Json(day.get("conditions") or []),
                         "error": day.get("error"), "at": values["at"]},
                    )  # fmt: skip
                return result_id

        result_id = self._write(add)
        found = self.check_results_by_id([result_id])
        return found[0]

    def check_dates_before(self, processor: str, check: str, before: str, count: int) -> list[CheckDate]:
        """The latest stored row of each of the ``count`` dates before ``before`` that a check
        judged, newest date first."""
        from runbook.state.records import from_rows

        return from_rows(
            CheckDate,
            self.db.rows(
                f"SELECT {CHECK_DATE_COLUMNS} FROM check_date WHERE id IN (SELECT MAX(id) FROM check_date "
                "WHERE processor = :p AND check_name = :c AND date < :before GROUP BY date) "
                f"ORDER BY date DESC LIMIT {int(count)}",
                {"p": processor, "c": check, "before": before},
            ),
        )

    def check_dates_before_builds(
        self, processor: str, check: str, dates: Sequence[str]
    ) -> dict[str, CheckDate]:
        """For each of ``dates``, the values a check stored for it before the date was last built
        (the start of its newest succeeded task); the newest stored values when it never was."""
        from runbook.state.records import from_rows

        if not dates:
            return {}
        built: dict[str, dt.datetime] = {}
        for first, last, started in self.db.rows(
            "SELECT date, end_date, MAX(started_at) FROM task WHERE processor = :p AND status = 'succeeded' "
            "AND date <= :end AND end_date >= :start GROUP BY date, end_date",
            {"p": processor, "start": min(dates), "end": max(dates)},
        ):
            when = as_utc(started) if started is not None else None
            if when is None:
                continue
            day, stop = dt.date.fromisoformat(str(first)), dt.date.fromisoformat(str(last))
            while day <= stop:
                key = day.isoformat()
                if key not in built or built[key] < when:
                    built[key] = when
                day += dt.timedelta(days=1)
        found: dict[str, CheckDate] = {}
        for start in range(0, len(dates), 500):
            rows = from_rows(
                CheckDate,
                self.db.rows(
                    f"SELECT {CHECK_DATE_COLUMNS} FROM check_date WHERE processor = :p AND check_name = :c "
                    "AND date IN :dates ORDER BY id",
                    {"p": processor, "c": check, "dates": list(dates[start : start + 500])},
                ),
            )
            for row in rows:
                cutoff = built.get(row.date)
                if cutoff is None or (row.at is not None and row.at < cutoff):
                    found[row.date] = row
        return found

    def check_dates_latest(self, processor: str, check: str, dates: Sequence[str]) -> dict[str, CheckDate]:
        """The latest stored row of each of ``dates`` for a check (dates never judged are absent)."""
        from runbook.state.records import from_rows

        found: dict[str, CheckDate] = {}
        for start in range(0, len(dates), 500):
            rows = from_rows(
                CheckDate,
                self.db.rows(
                    f"SELECT {CHECK_DATE_COLUMNS} FROM check_date WHERE id IN (SELECT MAX(id) FROM check_date "
                    "WHERE processor = :p AND check_name = :c AND date IN :dates GROUP BY date)",
                    {"p": processor, "c": check, "dates": list(dates[start : start + 500])},
                ),
            )
            found.update((row.date, row) for row in rows)
        return found

    def check_results_by_id(self, ids: Sequence[int]) -> list[CheckResult]:
        from runbook.state.journal_queries import CHECK_COLUMNS
        from runbook.state.records import from_rows

        return from_rows(
            CheckResult,
            self.db.rows(
                f"SELECT {CHECK_COLUMNS} FROM check_result WHERE id IN :ids ORDER BY id", {"ids": list(ids)}
            ),
        )

    def start_session(self, title: str, now: dt.datetime) -> WorkSession:
        """Open the next numbered session, unless one is open: one conditional insert."""

        def start(db: Database) -> int | None:
            with db.transaction(exclusive=True):
                db.advisory_lock(_SESSION_LOCK)
                if Queries(db).open_session() is not None:
                    return None
                return db.insert(
                    "INSERT INTO work_session (title, started_at) VALUES (:title, :at) RETURNING id",
                    {"title": title, "at": now},
                )

        session_id = self._write(start)
        if session_id is None:
            current = self.open_session()
            assert current is not None
            raise SessionOpen(current)
        found = self.get_session(session_id)
        assert found is not None
        return found

    def end_session(self, session_id: int, ended_at: dt.datetime, handoff_path: str | None) -> bool:
        """Close a session that is still open; False when someone else closed it first."""
        return (
            self._write(
                lambda db: db.execute(
                    "UPDATE work_session SET ended_at = :at, handoff_path = :path WHERE id = :id AND ended_at IS NULL",
                    {"id": session_id, "at": ended_at, "path": handoff_path},
                )
            )
            == 1
        )

    def add_note(self, session_id: int | None, kind: str, text: str, at: dt.datetime) -> Note:
        note_id = self._write(
            lambda db: db.insert(
                "INSERT INTO note (session_id, kind, text, at) VALUES (:session, :kind, :text, :at) RETURNING id",
                {"session": session_id, "kind": kind, "text": text, "at": at},
            )
        )
        return Note(note_id, session_id, kind, text, at)


class SessionOpen(StateError):
    """Another session is open: the state cannot hold two."""

    def __init__(self, session: WorkSession) -> None:
        started = f"{session.started_at:%Y-%m-%d %H:%M} UTC" if session.started_at else "earlier"
        super().__init__(
            f"session {session.id} is already open (started {started}): end it first with `runbook session end`"
        )
        self.session = session


def _run_from(run_id: int, values: Mapping[str, Any]) -> Run:
    plain = {key: value.value if isinstance(value, Json) else value for key, value in values.items()}
    return Run(id=run_id, **plain)


_SESSION_LOCK = 0x72756E62_0001  # "runb" + 1: serialises session starts on PostgreSQL


__all__ = ["SessionOpen", "Store", "utcnow"]
