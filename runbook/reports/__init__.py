"""Handoff reports: the state store's answer to "where are we, and what next?".

:func:`build_context` gathers the report as data (the same dict ``--format json`` prints);
:func:`report_text` renders it as Markdown, as a brief of at most 40 lines, or as JSON;
:func:`default_path` names the file ``runbook handoff`` writes under ``handoffs/``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from runbook.errors import UsageError
from runbook.reports.context import Scope, build_context, resolve_scope
from runbook.reports.render import BRIEF_MAX_LINES, TEMPLATES, render, resolve_timezone

__all__ = [
    "FORMATS",
    "Scope",
    "build_context",
    "default_path",
    "report_text",
    "resolve_scope",
    "resolve_timezone",
]

FORMATS = ("markdown", "json", "brief")


def report_text(
    context: dict[str, Any],
    *,
    format: str = "markdown",
    template: str | None = None,
    templates_dir: Path | None = None,
    tz: dt.tzinfo = dt.UTC,
) -> str:
    """The report in ``format``: Markdown (``template``, default handoff.md.j2), brief or JSON."""
    if format == "json":
        if template is not None:
            raise UsageError("--template applies to --format markdown and brief, not json")
        return json.dumps(context, indent=2, ensure_ascii=False) + "\n"
    if format not in TEMPLATES:
        raise UsageError(f"unknown format {format!r} (use {', '.join(FORMATS)})")
    max_lines = BRIEF_MAX_LINES if format == "brief" else None
    return render(
        context,
        template=template or TEMPLATES[format],
        tz=tz,
        templates_dir=templates_dir,
        max_lines=max_lines,
    )


def default_path(
    handoffs_dir: Path, now: dt.datetime, tz: dt.tzinfo, session_id: int | None, suffix: str = ".md"
) -> Path:
    """``handoffs/YYYY-MM-DD-HHMM-session-N.md`` in the report's time zone."""
    stamp = now.astimezone(tz).strftime("%Y-%m-%d-%H%M")
    name = f"{stamp}-session-{session_id}" if session_id is not None else stamp
    return handoffs_dir / f"{name}{suffix}"
