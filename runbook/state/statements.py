"""The store's hot path: statements compiled once, run on connections kept open.

The controller runs a few statements for every task (claim, record a PID, finish) and two on
every heartbeat. Through the full SQLAlchemy machinery each costs several times what SQLite
needs to run it: building the statement and its cache key, checking a connection out of the pool,
setting up an execution context and a result. So these statements are module constants, compiled
once per dialect (:class:`Prepared`: SQLAlchemy still renders the SQL and converts the values,
with the column types' own bind processors), and run on a DBAPI connection each thread keeps
open (:class:`HotConnections`). Only ``store.py`` uses this module.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Dialect, Engine, Executable, and_, bindparam, or_, update

from runbook.errors import StateError
from runbook.state.db import redact_url
from runbook.state.models import Run, Task

RUN = Run.__table__  # type: ignore[attr-defined]
TASK = Task.__table__  # type: ignore[attr-defined]

# Parameters are prefixed with ``p_`` because a bind parameter of an UPDATE may not share its
# name with a column.
CLAIM_TASK = (
    update(TASK)
    .where(
        TASK.c.id == bindparam("p_id"),
        or_(
            TASK.c.status == "pending",
            and_(TASK.c.status == "running", TASK.c.lease_until < bindparam("p_now")),
        ),
    )
    .values(
        status="running",
        claimed_by=bindparam("p_owner"),
        lease_until=bindparam("p_lease"),
        attempt=TASK.c.attempt + 1,
        started_at=bindparam("p_now"),
        finished_at=None,
        code_version=bindparam("p_version"),
        pid=None,
    )
)

SET_TASK_PID = update(TASK).where(TASK.c.id == bindparam("p_id")).values(pid=bindparam("p_pid"))

FINISH_TASK = (
    update(TASK)
    .where(TASK.c.id == bindparam("p_id"))
    .values(
        status=bindparam("p_status"),
        finished_at=bindparam("p_now"),
        duration_seconds=bindparam("p_duration"),
        exit_code=bindparam("p_exit_code"),
        error_tail=bindparam("p_error"),
        rows_affected=bindparam("p_rows"),
        lease_until=None,
        not_before=bindparam("p_retry_at"),
    )
)

BEAT_RUN = (
    update(RUN)
    .where(RUN.c.id == bindparam("p_run"), RUN.c.controller_id == bindparam("p_owner"))
    .values(heartbeat_at=bindparam("p_now"))
)

BEAT_TASKS = (
    update(TASK)
    .where(
        TASK.c.run_id == bindparam("p_run"),
        TASK.c.status == "running",
        TASK.c.claimed_by == bindparam("p_owner"),
    )
    .values(lease_until=bindparam("p_lease"))
)


# A connection idle longer than this goes back to the pool and a fresh one is taken (the pool
# pings PostgreSQL connections before handing them out; a held one could have been dropped).
IDLE_SECONDS = 30.0


class Prepared:
    """A statement compiled once for one dialect, with its parameters processed by SQLAlchemy's
    own bind processors, run straight on a DBAPI cursor (no execution context per call)."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if compiled.escaped_bind_names:
            raise ValueError(f"bind names need escaping: {compiled.escaped_bind_names}")
        self.sql: str = compiled.string
        self.positions: list[str] | None = compiled.positiontup
        required = {name: None for name, bind in compiled.binds.items() if bind.required}
        self.defaults = {
            name: value for name, value in compiled.construct_params(required).items() if name not in required
        }
        processors: dict[str, Any] = {}  # by name: a parameter used twice is converted once
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        self.processors = list(processors.items())

    def execute(self, cursor: Any, values: dict[str, Any]) -> int:
        """Run with ``values`` for the named parameters; return the number of rows it touched."""
        params = {**self.defaults, **values}
        for name, process in self.processors:
            params[name] = process(params[name])
        cursor.execute(self.sql, params if self.positions is None else [params[n] for n in self.positions])
        return int(cursor.rowcount)


class HotConnections:
    """One open DBAPI connection per thread, for the short transactions run for every task."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._prepared: dict[int, Prepared] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: dict[int, tuple[threading.Thread, Any]] = {}

    def run(self, *steps: tuple[Executable, dict[str, Any]]) -> list[int]:
        """Run (statement, values) pairs in one transaction; return the rows each one touched."""
        conn = self._connection()
        cursor = conn.cursor()
        try:
            counts = [self._prepare(statement).execute(cursor, values) for statement, values in steps]
            conn.commit()
            return counts
        except self.engine.dialect.loaded_dbapi.Error as exc:
            self._rollback(conn, self.engine.dialect.is_disconnect(exc, conn, cursor))
            cause = " ".join(str(exc).split())
            raise StateError(f"state DB {redact_url(str(self.engine.url))} refused a write: {cause}") from exc
        except BaseException:
            self._rollback(conn, False)
            raise
        finally:
            cursor.close()

    def _prepare(self, statement: Executable) -> Prepared:
        prepared = self._prepared.get(id(statement))
        if prepared is None:
            prepared = self._prepared[id(statement)] = Prepared(statement, self.engine.dialect)
        return prepared

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        now = time.monotonic()
        if conn is not None and (not conn.is_valid or now - self._local.used > IDLE_SECONDS):
            self._release(conn)
            conn = None
        if conn is None:
            conn = self.engine.raw_connection()
            self._local.conn = conn
            with self._lock:
                # Connections of threads that have ended go back to the pool.
                for key, (thread, other) in list(self._held.items()):
                    if not thread.is_alive():
                        other.close()
                        del self._held[key]
                self._held[id(conn)] = (threading.current_thread(), conn)
        self._local.used = now
        return conn

    def _rollback(self, conn: Any, disconnected: bool) -> None:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - the connection is dropped below
            disconnected = True
        if disconnected:
            conn.invalidate()
        if not conn.is_valid:
            self._release(conn)

    def _release(self, conn: Any) -> None:
        with self._lock:
            self._held.pop(id(conn), None)
        conn.close()
        self._local.conn = None

    def close(self) -> None:
        """Return every held connection to the pool (call before disposing of the engine)."""
        with self._lock:
            held = [conn for _, conn in self._held.values()]
            self._held.clear()
        for conn in held:
            conn.close()
