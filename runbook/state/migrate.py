"""The state store's schema: Alembic migrations shipped inside the package.

Only this module (with ``models.py`` and ``migrations/``) uses SQLAlchemy and Alembic; everything
else talks plain SQL through :mod:`runbook.state.connect`. A new database is created at head the
first time a command writes to it; a database whose revision is behind is refused with a message
naming ``runbook db upgrade``, so runbook never writes to a schema it does not know.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from runbook.errors import StateError
from runbook.state.connect import (
    HEAD_REVISION,
    SQLITE_BUSY_TIMEOUT_MS,
    backend,
    connect,
    read_revision,
    redact_url,
    sqlite_path,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
RACE_WAIT_SECONDS = 10.0

__all__ = ["HEAD_REVISION", "create_schema", "current_revision", "downgrade", "make_engine", "upgrade"]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url`` (migrations only); for SQLite files the folder is created."""
    kind = backend(url)
    try:
        if kind == "sqlite":
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if kind == "postgresql":
            # psycopg (3) is the driver runbook installs; a bare postgresql:// means it.
            scheme, rest = url.split(":", 1)
            if "+" not in scheme or scheme.endswith("+psycopg2"):
                url = "postgresql+psycopg:" + rest
            return create_engine(url, pool_pre_ping=True)
    except (ImportError, ArgumentError, SQLAlchemyError) as exc:
        raise StateError(f"cannot use database {redact_url(url)}: {exc}") from None
    raise StateError(f"unsupported database URL {redact_url(url)}: use sqlite:/// or postgresql://")


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's message on one line (libpq adds hints on lines of their own)."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def current_revision(url: str) -> str | None:
    """The alembic revision of the database, or None when it has no runbook schema."""
    db = connect(url)
    if db is None:
        return None
    try:
        return read_revision(db) or None
    finally:
        db.close()


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


def _migrate(url: str, direction: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    engine = make_engine(url)
    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                # Python's sqlite3 runs DDL outside a transaction; take the write lock first so
                # that nobody sees a half-built schema and concurrent migrators wait their turn.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(text("SELECT pg_advisory_xact_lock(7364721)"))
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
    except CommandError as exc:
        raise StateError(f"cannot {direction} state DB {redact_url(url)}: {exc}") from None
    except SQLAlchemyError as exc:
        raise StateError(f"cannot {direction} state DB {redact_url(url)}: {_cause(exc)}") from None
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Run the shipped migrations up to ``revision``."""
    found = current_revision(url)
    if found is not None and found not in known_revisions():
        raise StateError(
            f"state DB {redact_url(url)} is at revision {found}, which this runbook does not "
            f"know (its newest is {HEAD_REVISION}): it was migrated by a newer runbook; upgrade runbook"
        )
    _migrate(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> None:
    """Undo migrations down to ``revision`` (``base`` drops every runbook table)."""
    _migrate(url, "downgrade", revision)


def create_schema(url: str) -> None:
    """Create a new, empty database at head.

    Two processes opening the same new database race to create it: one wins, and the other waits
    until the winner's revision is there.
    """
    try:
        upgrade(url)
    except StateError:
        deadline = time.monotonic() + RACE_WAIT_SECONDS
        while current_revision(url) != HEAD_REVISION:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
