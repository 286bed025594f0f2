"""``runbook db``: the state store's schema revision and its migrations."""

from __future__ import annotations

import click

from runbook.cli._context import Context, emit_document, json_option, pass_ctx


@click.group()
def db() -> None:
    """The state store's schema (Alembic migrations shipped inside runbook)."""


@db.command()
@pass_ctx
def upgrade(obj: Context) -> None:
    """Migrate the state DB to the newest schema.

    Example: RUNBOOK_DATABASE_URL=postgresql://postgres@127.0.0.1/runbook runbook db upgrade
    """
    from runbook.state import migrate
    from runbook.state.connect import redact_url

    url = obj.workspace.database_url
    before = migrate.current_revision(url)
    migrate.upgrade(url)
    click.echo(f"state DB {redact_url(url)}: {before or 'empty'} -> {migrate.HEAD_REVISION}")


@db.command()
@json_option
@pass_ctx
def current(obj: Context, json_out: bool) -> None:
    """Show the state DB's schema revision and the one this runbook needs."""
    from runbook.state.connect import HEAD_REVISION, connect, read_revision, redact_url

    url = obj.workspace.database_url
    database = connect(url)
    try:
        revision = (read_revision(database) or None) if database is not None else None
    finally:
        if database is not None:
            database.close()
    if json_out:
        emit_document(
            url=redact_url(url), revision=revision, head=HEAD_REVISION, up_to_date=revision == HEAD_REVISION
        )
    else:
        click.echo(f"{redact_url(url)}: revision {revision or 'none'} (head {HEAD_REVISION})")


COMMANDS = [db]
