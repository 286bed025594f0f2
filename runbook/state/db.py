"""Engines and schema revisions of the state store.

SQLite is tuned for one writer with many readers (WAL, a busy timeout, foreign keys on). An empty
database is migrated to head automatically; a database whose revision is behind is refused with a
message naming ``runbook db upgrade``, so runbook never writes to a schema it does not know.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from runbook.errors import StateError

# The newest migration in runbook/state/migrations/versions; a test keeps the two in step, so
# checking a database's revision does not need to import alembic on every command.
HEAD_REVISION = "0001"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
RUNBOOK_TABLES = frozenset({"run", "task", "event", "check_result", "work_session", "note"})
SQLITE_BUSY_TIMEOUT_MS = 30_000
RACE_WAIT_SECONDS = 10.0
POSTGRES_WITHOUT_PSYCOPG = ("postgres", "postgresql", "postgresql+psycopg2")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite files the parent folder is created."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StateError(f"invalid database URL {url!r}: expected e.g. sqlite:///state/runbook.db") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername in POSTGRES_WITHOUT_PSYCOPG:
        # psycopg (3) is the driver runbook installs; a bare postgresql:// means it on any SQLAlchemy.
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (ImportError, SQLAlchemyError) as exc:
        raise StateError(f"cannot use database {redact_url(url)}: {exc}") from None


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's message on one line (libpq adds hints on lines of their own)."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def _read_revision(engine: Engine) -> tuple[bool, str | None]:
    """(whether alembic has versioned this database, its revision or None at base)."""
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            if "alembic_version" not in names:
                if names & RUNBOOK_TABLES:
                    raise StateError(
                        f"state DB {redact_url(str(engine.url))} has runbook tables but no revision: "
                        "it was not created by runbook"
                    )
                return False, None
            return True, conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise StateError(f"cannot open state DB {redact_url(str(engine.url))}: {_cause(exc)}") from None


def current_revision(engine: Engine) -> str | None:
    """The alembic revision of the database, or None when it has no runbook schema."""
    return _read_revision(engine)[1]


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", str(engine.url).replace("%", "%%"))
    return cfg


def known_revisions() -> set[str]:
    """Every revision shipped in runbook/state/migrations/versions."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    return {script.revision for script in scripts.walk_revisions()}


def _migrate(engine: Engine, direction: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                # Python's sqlite3 runs DDL outside a transaction; take the write lock first so
                # that nobody sees a half-built schema and concurrent migrators wait their turn.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
    except CommandError as exc:
        raise StateError(f"cannot {direction} state DB {redact_url(str(engine.url))}: {exc}") from None
    except SQLAlchemyError as exc:
        raise StateError(
            f"cannot {direction} state DB {redact_url(str(engine.url))}: {_cause(exc)}"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the shipped migrations up to ``revision`` on ``engine``."""
    found = current_revision(engine)
    if found is not None and found not in known_revisions():
        raise StateError(_unknown_revision(engine, found))
    _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to ``revision`` (``base`` drops every runbook table)."""
    _migrate(engine, "downgrade", revision)


def _unknown_revision(engine: Engine, revision: str) -> str:
    return (
        f"state DB {redact_url(str(engine.url))} is at revision {revision}, which this runbook does not "
        f"know (its newest is {HEAD_REVISION}): it was migrated by a newer runbook; upgrade runbook"
    )


def ensure_schema(engine: Engine) -> None:
    """Create a new database at head; refuse one that is behind or ahead of this runbook.

    A database alembic has never touched is new. One whose ``alembic_version`` is empty was
    downgraded on purpose, so it is treated as behind rather than silently recreated.
    """
    versioned, revision = _read_revision(engine)
    if not versioned:
        try:
            upgrade(engine)
        except StateError:
            # Two processes opening the same new database race to create it: one wins, the
            # other waits until the winner's revision is there.
            deadline = time.monotonic() + RACE_WAIT_SECONDS
            while current_revision(engine) != HEAD_REVISION:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return
    if revision == HEAD_REVISION:
        return
    if revision is not None and revision not in known_revisions():
        raise StateError(_unknown_revision(engine, revision))
    raise StateError(
        f"state DB {redact_url(str(engine.url))} is at revision {revision or 'base (no tables)'}, "
        f"this runbook needs {HEAD_REVISION}: run `runbook db upgrade`"
    )
