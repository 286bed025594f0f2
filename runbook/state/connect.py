"""Database URLs and plain DBAPI connections, without SQLAlchemy.

Reading the state store must be quick: ``runbook status`` is called dozens of times a session,
and importing SQLAlchemy alone costs more than the whole answer should. The read model therefore
talks to ``sqlite3`` (standard library) or ``psycopg`` directly through :class:`Database`, with
SQL written once using ``:name`` parameters. Writers (the controller, ``runbook run``) use the
same SQL through the connections of :mod:`runbook.state.store`.

Commands that only read never create a state store: :func:`open_database` returns None when
there is none yet.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from runbook.errors import StateError

# The newest migration in runbook/state/migrations/versions; a test keeps the two in step, so
# checking a database's revision does not need to import alembic on every command.
HEAD_REVISION = "0008"
RUNBOOK_TABLES = frozenset(
    {"run", "task", "task_latest", "task_dep", "gate", "gate_dep", "worker", "pool", "event", "check_result",
     "check_date", "work_session", "note", "notification"}
)  # fmt: skip
SQLITE_BUSY_TIMEOUT_MS = 30_000
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and reports."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid database URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def backend(url: str) -> str:
    """``sqlite`` or ``postgresql`` (the part of the scheme before any ``+driver``)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return "postgresql" if scheme in ("postgres", "postgresql") else scheme


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL; None for an in-memory database."""
    rest = url.split(":", 1)[1].removeprefix("//")
    path = unquote(rest.split("?", 1)[0])
    if path.startswith("/"):  # sqlite:///relative, sqlite:////absolute
        path = path[1:]
    path = path or ":memory:"
    return None if path == ":memory:" else Path(path)


def postgres_conninfo(url: str) -> str:
    """A libpq connection URI from a SQLAlchemy-style URL (``postgresql+psycopg://...``)."""
    return "postgresql:" + url.split(":", 1)[1]


class Json:
    """A value stored in a JSON column (plain lists and tuples are expanded for ``IN`` instead)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Array:
    """A list passed as one PostgreSQL array parameter (``unnest(CAST(:ids AS integer[]))``), so
    that a statement's text does not depend on how many items it carries (plain lists and tuples
    are expanded for ``IN`` instead)."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)


class Database:
    """One DBAPI connection in autocommit mode, and the dialect of its SQL.

    SQL is written once with ``:name`` parameters. A parameter whose value is a list or tuple
    becomes a list of placeholders (``id IN :ids``); a :class:`Json` value is stored as JSON text;
    a datetime is stored as SQLite's text for it (the format SQLAlchemy writes) or as a
    ``timestamptz``. Writes that must be atomic run in :meth:`transaction`.
    """

    def __init__(self, connection: Any, dialect: str, url: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self.url = url
        self._in_transaction = False
        self._sql: dict[str, str] = {}
        self._files: list[Path] | None = None  # a SQLite file's database, WAL and shared-memory files

    def ensure_writable(self) -> None:
        """SQLite: refuse (one StateError line) when the database, its WAL or its shared-memory
        file was made read-only or removed under this process.

        SQLite writes the shared-memory file through a memory map: once that file is read-only,
        the next write (even a read's lock) kills the process with SIGBUS instead of raising an
        error, so the writers ask first. A removed WAL file would silently split the database.
        """
        if self.dialect != "sqlite":
            return
        if self._files is None:
            path = sqlite_path(self.url)
            self._files = [] if path is None else [
                f for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if f.exists()
            ]  # fmt: skip
        for path in self._files:
            if not os.access(path, os.W_OK):
                what = "was removed" if not path.exists() else "is no longer writable (read-only)"
                raise StateError(f"state DB {redact_url(self.url)}: {path.name} {what}")

    # -- reading ----------------------------------------------------------------------------------

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        cursor = self._run(sql, params or {})
        try:
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        finally:
            cursor.close()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    # -- writing ----------------------------------------------------------------------------------

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement; return the number of rows it touched."""
        cursor = self._run(sql, params or {})
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run an INSERT ending in ``RETURNING id``; return the new id."""
        found = self.rows(sql, params)
        return int(found[0][0])

    def executemany(self, sql: str, batch: Sequence[Mapping[str, Any]]) -> None:
        if not batch:
            return
        text, _ = self._prepare(sql, batch[0])
        cursor = self.connection.cursor()
        try:
            cursor.executemany(text, [self._scalars(row) for row in batch])
        except Exception as exc:
            raise self._error(exc) from exc
        finally:
            cursor.close()

    @contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator[Database]:
        """One transaction; ``exclusive`` takes SQLite's write lock at once (``BEGIN IMMEDIATE``)."""
        if self._in_transaction:
            yield self
            return
        begin = "BEGIN IMMEDIATE" if exclusive and self.dialect == "sqlite" else "BEGIN"
        self._raw(begin)
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._in_transaction = False
            with suppress(Exception):
                self._raw("ROLLBACK")
            raise
        self._in_transaction = False
        try:
            self._raw("COMMIT")
        except BaseException:
            with suppress(Exception):
                self._raw("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[Database]:
        """Reads that see one state of the store: a report of several queries gives one answer
        even while runs write (SQLite: a read transaction; PostgreSQL: repeatable read)."""
        if self._in_transaction:
            yield self
            return
        sqlite = self.dialect == "sqlite"
        self._raw("BEGIN" if sqlite else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self._in_transaction = True
        try:
            yield self
        finally:
            self._in_transaction = False
            with suppress(Exception):
                self._raw("COMMIT")

    def advisory_lock(self, key: int) -> None:
        """PostgreSQL: hold a transaction-scoped lock on ``key`` (SQLite's write lock serves instead)."""
        if self.dialect == "postgresql":
            self.execute("SELECT pg_advisory_xact_lock(:key)", {"key": key})

    # -- plumbing ---------------------------------------------------------------------------------

    def _raw(self, sql: str) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql)
        except Exception as exc:
            raise self._error(exc) from exc
        finally:
            cursor.close()

    def _run(self, sql: str, params: Mapping[str, Any]) -> Any:
        text, values = self._values(sql, params)
        cursor = self.connection.cursor()
        try:
            cursor.execute(text, values)
        except Exception as exc:
            cursor.close()
            raise self._error(exc) from exc
        return cursor

    def _error(self, exc: BaseException) -> BaseException:
        if not _is_db_error(exc):
            return exc
        return DatabaseFault(f"state DB {redact_url(self.url)} failed: {_one_line(exc)}", exc)

    def _values(self, sql: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        sizes = tuple(
            (name, len(value) or 1)
            for name, value in params.items()
            if isinstance(value, list | tuple | set | frozenset)
        )
        if sizes:
            # The text depends only on how many items each list has: prepare it once per shape.
            key = f"{sql}\0{sizes}"
            text = self._sql.get(key) or self._sql.setdefault(key, self._prepare(sql, params)[0])
            values = {}
            for name, value in params.items():
                if isinstance(value, list | tuple | set | frozenset):
                    values.update({f"{name}_{i}": item for i, item in enumerate(list(value) or [None])})
                else:
                    values[name] = value
        else:
            text = self._sql.get(sql) or self._sql.setdefault(sql, self._prepare(sql, params)[0])
            values = dict(params)
        return text, self._scalars(values)

    def _scalars(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with times and JSON values as the driver takes them (no lists)."""
        values = dict(params)
        for key, value in values.items():
            if isinstance(value, dt.datetime):
                values[key] = self._time(value)
            elif isinstance(value, Json):
                values[key] = json.dumps(value.value, default=str)
            elif isinstance(value, Array):
                values[key] = [
                    self._time(item) if isinstance(item, dt.datetime) else item for item in value.items
                ]
        return values

    def _time(self, value: dt.datetime) -> Any:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: runbook stores UTC times only")
        value = value.astimezone(dt.UTC)
        if self.dialect == "sqlite":
            return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def _prepare(self, sql: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        values: dict[str, Any] = {}

        def place(match: re.Match[str]) -> str:
            name = match.group(1)
            value = params[name]
            if isinstance(value, list | tuple | set | frozenset):
                items = list(value) or [None]
                names = [f"{name}_{i}" for i in range(len(items))]
                values.update(zip(names, items, strict=True))
                return "(" + ", ".join(self._marker(n) for n in names) + ")"
            values[name] = value
            return self._marker(name)

        return _PARAM.sub(place, sql), values

    def _marker(self, name: str) -> str:
        return f":{name}" if self.dialect == "sqlite" else f"%({name})s"

    def close(self) -> None:
        with suppress(Exception):
            self.connection.close()


class DatabaseFault(StateError):
    """The database refused or failed a statement (locked, read-only, gone, corrupt, ...)."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause

    @property
    def disconnected(self) -> bool:
        return any(cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(self.cause).__mro__)


def _is_db_error(exc: BaseException) -> bool:
    """An error of the DBAPI driver (sqlite3 or psycopg): every driver roots them at ``Error``."""
    return any(
        cls.__name__ == "Error" and cls.__module__.split(".")[0] in ("sqlite3", "psycopg")
        for cls in type(exc).__mro__
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def connect(url: str, *, create: bool = False) -> Database | None:
    """A connection to the database at ``url``; None when it is a SQLite file that does not exist
    and ``create`` is false (commands that only read never create a state store)."""
    kind = backend(url)
    if kind == "sqlite":
        return _connect_sqlite(url, create)
    if kind == "postgresql":
        return _connect_postgres(url)
    raise StateError(f"unsupported database URL {redact_url(url)}: use sqlite:/// or postgresql://")


def open_database(url: str) -> Database | None:
    """A read connection to the state store at ``url``, or None when it does not exist yet.

    The schema revision is checked: a store behind this runbook says to run ``runbook db upgrade``,
    one ahead of it says to upgrade runbook. A file that is not a database is one line, exit 2.
    """
    db = connect(url)
    if db is None:
        return None
    try:
        revision = read_revision(db)
        if revision is not None:
            require_head(revision, url)
    except BaseException:
        db.close()
        raise
    if revision is None:
        db.close()
        return None
    return db


def _connect_sqlite(url: str, create: bool) -> Database | None:
    import sqlite3

    path = sqlite_path(url)
    if path is not None and not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
    target = f"file:{path}?mode={'rwc' if create else 'rw'}" if path is not None else "file::memory:"
    # SQLite answers "database is locked" at once, without waiting for the busy timeout, in a few
    # moments of a database's life: while another process turns a new file into WAL mode, or
    # checkpoints and removes the WAL as its last connection closes. Opening waits those out.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        conn = None
        try:
            conn = sqlite3.connect(
                target,
                uri=True,
                timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            return Database(conn, "sqlite", url)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            busy = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()
            if not busy or time.monotonic() >= deadline:
                raise StateError(f"cannot open state DB {redact_url(url)}: {_one_line(exc)}") from None
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _connect_postgres(url: str) -> Database:
    try:
        import psycopg
    except ImportError:
        raise StateError("PostgreSQL state stores need psycopg: pip install 'runbook[postgres]'") from None
    try:
        conn = psycopg.connect(postgres_conninfo(url), connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        refused = StateError(f"cannot open state DB {redact_url(url)}: {_one_line(exc)}")
        refused.transient = True  # a server that restarts, a network that drops: try again later
        raise refused from None
    # runbook's statements are short: compiling one (JIT) costs far more than running it. A
    # server or pooler that refuses the setting is only slower.
    with suppress(psycopg.Error):
        conn.execute("SET jit = off")
    return Database(conn, "postgresql", url)


def table_names(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    return {row[0] for row in db.rows(sql)}


def read_revision(db: Database) -> str | None:
    """The alembic revision of the store; None for an empty database (no runbook tables)."""
    names = table_names(db)
    if "alembic_version" not in names:
        if names & RUNBOOK_TABLES:
            raise StateError(
                f"state DB {redact_url(db.url)} has runbook tables but no revision: it was not created by runbook"
            )
        return None
    revision = db.scalar("SELECT version_num FROM alembic_version")
    return str(revision) if revision is not None else ""


def require_head(revision: str, url: str, known: Sequence[str] | None = None) -> None:
    """Refuse a store whose schema is not the one this runbook writes."""
    if revision == HEAD_REVISION:
        return
    if revision and revision > HEAD_REVISION and (known is None or revision not in known):
        raise StateError(
            f"state DB {redact_url(url)} is at revision {revision}, which this runbook does not "
            f"know (its newest is {HEAD_REVISION}): it was migrated by a newer runbook; upgrade runbook"
        )
    raise StateError(
        f"state DB {redact_url(url)} is at revision {revision or 'base (no tables)'}, "
        f"this runbook needs {HEAD_REVISION}: run `runbook db upgrade`"
    )
