"""Engines and schema revisions of the state store.

SQLite is tuned for one writer with many readers (WAL, a busy timeout, foreign keys on). An empty
database is migrated to head automatically; a database whose revision is behind is refused with a
message naming ``runbook db upgrade``, so runbook never writes to a schema it does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from runbook.errors import StateError

# The newest migration in runbook/state/migrations/versions; a test keeps the two in step, so
# checking a database's revision does not need to import alembic on every command.
HEAD_REVISION = "0001"
SQLITE_BUSY_TIMEOUT_MS = 30_000


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
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (ImportError, SQLAlchemyError) as exc:
        raise StateError(f"cannot use database {redact_url(url)}: {exc}") from None


def current_revision(engine: Engine) -> str | None:
    """The alembic revision of the database, or None when it has no runbook tables yet."""
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            if "alembic_version" not in names:
                if names & {"run", "task"}:
                    raise StateError(
                        f"state DB {redact_url(str(engine.url))} has runbook tables but no revision: "
                        "it was not created by runbook"
                    )
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise StateError(f"cannot open state DB {redact_url(str(engine.url))}: {exc.orig}") from None


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", str(engine.url).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the shipped migrations up to ``revision`` on ``engine``."""
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def ensure_schema(engine: Engine) -> None:
    """Create an empty database at head; refuse one that is behind or ahead of this runbook."""
    revision = current_revision(engine)
    if revision is None:
        upgrade(engine)
        return
    if revision != HEAD_REVISION:
        raise StateError(
            f"state DB {redact_url(str(engine.url))} is at revision {revision}, this runbook needs "
            f"{HEAD_REVISION}: run `runbook db upgrade`"
        )
