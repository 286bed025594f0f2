"""The dashboard's HTML: Jinja templates (package data, autoescaped, strict) and their filters.

Templates live in ``runbook/serve/templates``; every value is escaped unless a template marks an
SVG drawn by :mod:`runbook.reports.heatmap` or :mod:`runbook.serve.charts` safe, and those escape
their own values. Times are shown in the server's time zone (``TZ``, else the system's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from runbook.formatting import bursts, duration, number, plural, span
from runbook.reports.heatmap import COLORS, OTHER_COLOR, phase_title
from runbook.reports.render import percent, time_filters


def environment(tz: dt.tzinfo) -> Environment:
    env = Environment(
        loader=PackageLoader("runbook", "serve/templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        bursts=bursts, duration=duration, number=number, percent=percent, plural=plural, span=span,
        color=lambda state: COLORS.get(state, OTHER_COLOR), phase_title=phase_title, bar=progress_bar, metric=metric,
        **time_filters(tz),
    )  # fmt: skip
    return env


def progress_bar(progress: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(state, width in percent) of a progress bar's parts: succeeded, failed, blocked, running."""
    work = progress.get("work") or 0
    if not work:
        return []
    parts = [
        (state, progress.get(state, 0) * 100 / work)
        for state in ("succeeded", "failed", "blocked", "running")
    ]
    return [(state, round(width, 2)) for state, width in parts if width > 0]


def metric(value: Any) -> str:
    """A check's value or threshold without float noise (98.69999999999999 -> 98.7)."""
    if value is None:
        return "—"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
