"""Commands for sessions, notes, handoff reports and coverage (registered on ``runbook.cli.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from runbook.cli import Context, as_date, cli, date_option, emit_json, pass_ctx
from runbook.errors import UsageError

TZ_HELP = "Time zone for times in the report (IANA name; default: TZ or the system's). Env: RUNBOOK_TZ."
# The same as runbook.handoff.sections.NOTE_KINDS (a test keeps them equal), repeated here so that
# `runbook --help` does not import the state store.
NOTE_KINDS = ("fix", "issue", "decision", "next")
MAX_RANGES = 20  # per section of `runbook coverage`; --json has them all


def _report(
    obj: Context, *, format_: str, template: str | None, tz_name: str | None, scope: Any
) -> tuple[str, Any]:
    """(the report's text, its time zone) for ``scope`` as of now."""
    from runbook.handoff import build_context, report_text, resolve_timezone
    from runbook.state.models import utcnow

    workspace = obj.workspace
    tz, zone = resolve_timezone(tz_name, dict(workspace.environ))
    now = utcnow()
    context = build_context(
        workspace, obj.store, now=now, timezone=zone, scope=scope, calendar_for=obj.runner().calendar
    )
    text = report_text(
        context, format=format_, template=template, templates_dir=workspace.templates_dir, tz=tz
    )
    return text, tz


def _write(obj: Context, text: str, out: str | None, default: Path) -> str:
    """Write the report to ``out`` (``-`` = stdout) or ``default``; return where it went."""
    if out == "-":
        click.echo(text, nl=False)
        return "-"
    path = Path(out) if out else default
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    try:
        return str(path.resolve().relative_to(obj.workspace.root))
    except ValueError:
        return str(path)


@cli.group()
def session() -> None:
    """Numbered work sessions: runs and notes belong to the open one; `end` writes its handoff."""


@session.command("start")
@click.option("--title", "-t", default="", help="What this session is about.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@pass_ctx
def session_start(obj: Context, title: str, json_out: bool) -> None:
    """Open the next numbered session (numbers continue across the workspace's life).

    Example: runbook session start --title "Phase 4 backfill"
    """
    from runbook.coverage import iso_time
    from runbook.sessions import start_session

    started = start_session(obj.store, title)
    if json_out:
        emit_json({"session": started.id, "title": started.title, "started_at": iso_time(started.started_at)})
        return
    click.echo(f"session {started.id} started" + (f": {started.title}" if started.title else ""))
    click.echo("record what you learn with `runbook note`; `runbook session end` writes the handoff")


@session.command("end")
@click.option("--out", "-o", metavar="FILE", help="Where to write the handoff (default: handoffs/...).")
@click.option("--template", metavar="NAME", help="Template name (default: handoff.md.j2).")
@click.option("--tz", "tz_name", envvar="RUNBOOK_TZ", metavar="ZONE", help=TZ_HELP)
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output.")
@pass_ctx
def session_end(
    obj: Context, out: str | None, template: str | None, tz_name: str | None, json_out: bool
) -> None:
    """Close the open session and write its handoff report.

    Example: runbook session end
    """
    from runbook.coverage import iso_time
    from runbook.handoff import default_path
    from runbook.sessions import end_session

    def write(scope: Any) -> str:
        text, tz = _report(obj, format_="markdown", template=template, tz_name=tz_name, scope=scope)
        default = default_path(obj.workspace.handoffs_dir, scope.until, tz, scope.session.id)
        return _write(obj, text, out, default)

    ended, path = end_session(obj.store, write)
    if json_out:
        emit_json({"session": ended.id, "ended_at": iso_time(ended.ended_at), "handoff": path})
    elif path != "-":
        click.echo(f"session {ended.id} ended; handoff: {path}")


@cli.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--kind", "-k", type=click.Choice(NOTE_KINDS), default="issue", show_default=True,
              help="fix (applied), issue (known), decision (taken), next (step).")  # fmt: skip
@pass_ctx
def note(obj: Context, text: tuple[str, ...], kind: str) -> None:
    """Record what you learned; it appears in the handoff of the open session (or the next one).

    Example: runbook note --kind fix "usage_rate now joins team_offense_game_summary"
    """
    from runbook.sessions import add_note

    written = add_note(obj.store, " ".join(text), kind)
    where = (
        f"session {written.session_id}"
        if written.session_id
        else "no open session: kept for the next handoff"
    )
    click.echo(f"note {written.id} ({kind}) recorded ({where})")


@cli.command()
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
    from runbook.handoff import default_path, resolve_scope
    from runbook.state.models import utcnow

    scope = resolve_scope(obj.store, utcnow(), session_id)
    text, tz = _report(obj, format_=format_, template=template, tz_name=tz_name, scope=scope)
    if out is None and format_ != "markdown":
        out = "-"
    session_number = scope.session.id if scope.session else None
    path = _write(obj, text, out, default_path(obj.workspace.handoffs_dir, scope.until, tz, session_number))
    if path != "-":
        click.echo(f"handoff written: {path}")


@cli.command()
@click.argument("processor")
@date_option("--start", "First date (default: calendar.start, else the first date any run covered).")
@date_option("--end", "Last date (default: calendar.end, else the last date any run covered).")
@click.option("--dates", "list_dates", is_flag=True, help="List every date with its state.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable output (docs/json.md).")
@pass_ctx
def coverage(obj: Context, processor: str, start: Any, end: Any, list_dates: bool, json_out: bool) -> None:
    """Which dates of a processor are built, by which run, when, with which code; gaps and stale dates.

    Example: runbook coverage player_game_summary --start 2024-10-22 --end 2025-06-30
    """
    from runbook.coverage import coverage_report

    config = obj.workspace.config
    if processor not in config.processors:
        raise UsageError(f"unknown processor {processor!r} (known: {', '.join(config.processors)})")
    view = coverage_report(
        obj.workspace, obj.store, processor, as_date(start), as_date(end), obj.runner().calendar
    )
    if json_out:
        emit_json(view)
        return
    for line in coverage_lines(view, list_dates):
        click.echo(line)


def coverage_lines(view: dict[str, Any], list_dates: bool = False) -> list[str]:
    """``runbook coverage`` for people: a summary, then gaps, stale dates and failing checks as ranges."""
    s = view["summary"]
    skips = ", ".join(f"{n} {reason}" for reason, n in s["calendar_skips"].items())
    pct = "-" if s["coverage_pct"] is None else f"{s['coverage_pct']}%"
    lines = [
        f"{view['processor']} {view['start']}..{view['end']}, code version {view['code_version']}",
        f"  {s['expected']} dates expected" + (f" ({skips} not expected)" if skips else "")
        + f"; {s['built']} built ({pct}): {s['current']} current, {s['stale']} stale; {s['gaps']} never built"
        + (f"; newest attempt failed on {s['failed']}" if s["failed"] else ""),
    ]  # fmt: skip
    sections = (
        ("gaps", "never built:", "{dates} {noun} never built"),
        ("stale", f"stale (built with an older code version than {view['code_version']}):", "{dates} {noun} built with {versions}"),
        ("failing_checks", "failing checks (newest result per date):", "{check} failed on {dates} {noun}"),
    )  # fmt: skip
    for key, title, line in sections:
        if view[key]:
            lines.append(title)
        for found in view[key][:MAX_RANGES]:
            noun = "date" if found["dates"] == 1 else "dates"
            versions = ", ".join(found.get("code_versions", []))
            lines.append(f"  {_span(found)}: " + line.format(**found, noun=noun, versions=versions))
        if len(view[key]) > MAX_RANGES:
            lines.append(f"  ... {len(view[key]) - MAX_RANGES} more ranges (all of them with --json)")
    for key, label in (("fill_gaps", "fill gaps"), ("rebuild_stale", "rebuild stale")):
        if view["commands"][key]:
            lines.append(f"{label}: {view['commands'][key]}")
    if list_dates:
        lines.append("")
        lines += [_date_line(d) for d in view["dates"]]
    return lines


def _date_line(d: dict[str, Any]) -> str:
    if not d["expected"]:
        state = d["calendar_skip"]
    else:
        state = "stale" if d["stale"] else "built" if d["built"] else "gap"
    if d["built"]:
        detail = f"run {d['run_id']} {d['built_at']} {d['code_version']}"
    else:
        attempt = f"last attempt {d['last_attempt']}" if d["last_attempt"] else None
        detail = " ".join(filter(None, [d["skip_reason"], attempt]))
    checks = " ".join(f"{c['check']}={'ok' if c['passed'] else 'FAILED'}" for c in d["checks"])
    return f"{d['date']}  {state:<9} {detail}  {checks}".rstrip()


def _span(found: dict[str, Any]) -> str:
    return found["start"] if found["start"] == found["end"] else f"{found['start']}..{found['end']}"
