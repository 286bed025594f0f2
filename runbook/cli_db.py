"""``runbook db``: the state store's schema revision and its migrations."""

from __future__ import annotations

from typing import Any

import click

from runbook.cli import Context, cli, emit_json, pass_ctx


@cli.group()
def db() -> None:
    """The state store's schema (Alembic migrations shipped inside runbook)."""


@db.command()
@pass_ctx
def upgrade(obj: Context) -> None:
    """Migrate the state DB to the newest schema.

    Example: RUNBOOK_DATABASE_URL=postgresql://postgres@127.0.0.1/runbook runbook db upgrade
    """
    from runbook.state import db as state_db

    engine = state_db.make_engine(obj.workspace.database_url)
    before = state_db.current_revision(engine)
    state_db.upgrade(engine)
    click.echo(
        f"state DB {state_db.redact_url(obj.workspace.database_url)}: {before or 'empty'} -> {state_db.HEAD_REVISION}"
    )


@db.command()
@click.option("--json", "json_out", is_flag=True)
@pass_ctx
def current(obj: Context, json_out: bool) -> None:
    """Show the state DB's schema revision and the one this runbook needs."""
    from runbook.state import db as state_db

    engine = state_db.make_engine(obj.workspace.database_url)
    info: dict[str, Any] = {
        "url": state_db.redact_url(obj.workspace.database_url),
        "revision": state_db.current_revision(engine),
        "head": state_db.HEAD_REVISION,
    }
    info["up_to_date"] = info["revision"] == info["head"]
    if json_out:
        emit_json(info)
    else:
        click.echo(f"{info['url']}: revision {info['revision'] or 'none'} (head {info['head']})")
