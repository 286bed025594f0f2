"""``runbook session start|end``, ``note`` and ``handoff``."""

from __future__ import annotations

import click

from runbook.cli._context import Context, emit_json, json_option, pass_ctx

TZ_HELP = "Time zone for times in the report (IANA name; default: TZ or the system's). Env: RUNBOOK_TZ."
# The values of runbook.kinds.NoteKind (a test keeps them equal), repeated so that `--help`
# imports nothing else.
NOTE_KINDS = ("fix", "issue", "decision", "next")


@click.group()
def session() -> None:
    """Numbered work sessions: runs and notes belong to the open one; `end` writes its handoff."""


@session.command("start")
@click.option("--title", "-t", default="", help="What this session is about.")
@json_option
@pass_ctx
def session_start(obj: Context, title: str, json_out: bool) -> None:
    """Open the next numbered session (numbers continue across the workspace's life).

    Example: runbook session start --title "Phase 4 backfill"
    """
    from runbook.app.documents import session_document

    started = obj.app.session_start(title)
    if json_out:
        emit_json(session_document(started))
        return
    click.echo(f"session {started.id} started" + (f": {started.title}" if started.title else ""))
    click.echo("record what you learn with `runbook note`; `runbook session end` writes the handoff")


@session.command("end")
@click.option("--out", "-o", metavar="FILE", help="Where to write the handoff (default: handoffs/...).")
@click.option("--template", metavar="NAME", help="Template name (default: handoff.md.j2).")
@click.option("--tz", "tz_name", envvar="RUNBOOK_TZ", metavar="ZONE", help=TZ_HELP)
@json_option
@pass_ctx
def session_end(
    obj: Context, out: str | None, template: str | None, tz_name: str | None, json_out: bool
) -> None:
    """Close the open session and write its handoff report.

    Example: runbook session end
    """
    from runbook.app.documents import session_document

    ended, report = obj.app.session_end(out=out, template=template, tz_name=tz_name)
    if json_out:
        emit_json(session_document(ended, report))
    elif report.path == "-":
        click.echo(report.text, nl=False)
    else:
        click.echo(f"session {ended.id} ended; handoff: {report.path}")


@click.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--kind", "-k", type=click.Choice(NOTE_KINDS), default="issue", show_default=True,
              help="fix (applied), issue (known), decision (taken), next (step).")  # fmt: skip
@json_option
@pass_ctx
def note(obj: Context, text: tuple[str, ...], kind: str, json_out: bool) -> None:
    """Record what you learned; it appears in the handoff of the open session (or the next one).

    Example: runbook note --kind fix "usage_rate now joins team_offense_game_summary"
    """
    from runbook.app.documents import note_document

    written = obj.app.note(" ".join(text), kind)
    if json_out:
        emit_json(note_document(written))
        return
    where = (
        f"session {written.session_id}"
        if written.session_id
        else "no open session: kept for the next handoff"
    )
    click.echo(f"note {written.id} ({kind}) recorded ({where})")


@click.command()
@click.option("--out", "-o", metavar="FILE", help="Output file, - for stdout (default: markdown to "
              "handoffs/YYYY-MM-DD-HHMM-session-N.md, json and brief to stdout).")  # fmt: skip
@click.option("--template", "-t", metavar="NAME", help="Template from templates/ or the built-in ones.")
@click.option("--format", "-f", "format_", type=click.Choice(["markdown", "json", "brief"]), default="markdown",
              show_default=True, help="brief: at most 40 lines for an agent's context.")  # fmt: skip
@click.option(
    "--session", "session_id", type=int, metavar="N", help="Report on session N (default: the open one)."
)
@click.option("--tz", "tz_name", envvar="RUNBOOK_TZ", metavar="ZONE", help=TZ_HELP)
@pass_ctx
def handoff(obj: Context, out: str | None, template: str | None, format_: str, session_id: int | None,
            tz_name: str | None) -> None:  # fmt: skip
    """Render the current state as a handoff report: status, runs, checks, failures, next actions.

    Example: runbook handoff --format brief
    """
    report = obj.app.handoff(
        format=format_, template=template, session_id=session_id, tz_name=tz_name, out=out
    )
    if report.path == "-":
        click.echo(report.text, nl=False)
    else:
        click.echo(f"handoff written: {report.path}")


COMMANDS = [session, note, handoff]
