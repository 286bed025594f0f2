"""The heat map as SVG: the picture beside each handoff, and the grid of the dashboard's page.

:func:`heatmap_svg` draws the heat map's data (``to_data`` of a
:class:`~runbook.snapshots.heatmap.HeatMap`, the JSON ``/api/heatmap`` serves): a row per
processor under its phase's title, one rectangle per span of dates in the same state, month
ticks on top, and the legend with counts below. Every value written into the SVG is escaped;
each rectangle carries a ``<title>`` (what a browser shows on hover). With ``interactive`` the
rectangles also carry the data attributes the dashboard's script reads to tell which date was
clicked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from runbook.formatting import plural

# One colour per state, shared by the SVG, the dashboard's legend and its tests.
COLORS = {
    "succeeded": "#2da44e",
    "stale": "#bf8700",
    "running": "#0969da",
    "queued": "#8cc8ff",
    "failed": "#cf222e",
    "blocked": "#8250df",
    "never_built": "#afb8c1",
    "off_day": "#eaeef2",
    "bootstrap": "#f5e6c4",
    "upstream_missing": "#ffc1b6",
    "upstream_skipped": "#e0d4f5",
}
OTHER_COLOR = "#d0d7de"
MARGIN = 8
ROW_HEIGHT = 16
CELL_HEIGHT = 13
PHASE_HEIGHT = 20
AXIS_HEIGHT = 22
COUNT_WIDTH = 90
LEGEND_ROW = 18
FONT = "font-family='-apple-system, Segoe UI, Helvetica, Arial, sans-serif' font-size='11'"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def color(state: str) -> str:
    return COLORS.get(state, OTHER_COLOR)


def phase_title(phase: str) -> str:
    """``Phase 3`` for a numbered phase, the name itself otherwise (``Processors`` for none)."""
    if not phase:
        return "Processors"
    return f"Phase {phase}" if phase[0].isdigit() else phase


def heatmap_svg(
    data: Mapping[str, Any],
    *,
    plot_width: float = 900,
    min_day_width: float = 0,
    title: str | None = None,
    interactive: bool = False,
    legend: bool = True,
) -> str:
    """The heat map ``data`` as a standalone SVG document (UTF-8 text).

    The dates share ``plot_width`` pixels, each at least ``min_day_width`` wide (the picture is
    then wider). ``title`` is written above the grid, the legend (``legend``) below it.
    """
    start = dt.date.fromisoformat(data["start"])
    days = int(data["days"])
    rows = data["rows"]
    day_width = max(plot_width / max(days, 1), min_day_width)
    width_of_dates = day_width * days
    label_width = min(max((len(row["processor"]) for row in rows), default=10) * 6.6 + 16, 280)
    left = label_width
    wide = day_width * 7 >= 24  # day numbers under the months
    top = (22 if title else 0) + AXIS_HEIGHT + (12 if wide else 0)
    parts: list[str] = []
    if title:
        parts.append(f"<text x='0' y='14' font-weight='600' font-size='13'>{escape(title)}</text>")
    parts += _axis(start, days, left, top, day_width, interactive)
    y: float = top
    phase = None
    for row in rows:
        if row["phase"] != phase:
            phase = row["phase"]
            y += 4.0 if y > top else 0.0
            parts.append(
                f"<text x='0' y='{y + 14}' font-weight='600' fill='#57606a'>{escape(phase_title(phase))}</text>"
            )
            y += PHASE_HEIGHT
        parts.append(_row(row, start, left, y, day_width, interactive))
        y += ROW_HEIGHT
    if legend:
        swatches, y = _legend(data["legend"], left, y + 10, width_of_dates + COUNT_WIDTH)
        parts += swatches
    width = round(left + width_of_dates + COUNT_WIDTH + 2 * MARGIN)
    height = round(y + 4 + 2 * MARGIN)
    role = f" class='heatmap' data-start='{escape(data['start'])}' data-days='{days}'" if interactive else ""
    header = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'{role} {FONT}>"
    )
    summary = f"Processors by date, {data['start']}..{data['end']}"
    return "\n".join(
        [
            header,
            f"<title>{escape(summary)}</title>",
            f"<rect width='{width}' height='{height}' fill='#ffffff'/>",
            f"<g transform='translate({MARGIN},{MARGIN})'>",
            *parts,
            "</g>",
            "</svg>",
        ]
    )


def _axis(
    start: dt.date, days: int, left: float, top: float, day_width: float, interactive: bool
) -> list[str]:
    """Month labels over the grid (every month, quarter or year as room allows), and day numbers
    under them when the days are wide enough (every day, else Mondays)."""
    step = next((months for months in (1, 3, 6, 12) if 30.4 * months * day_width >= 46), 24)
    every = 1 if day_width >= 16 else 7 if day_width * 7 >= 24 else 0
    month_y = top - (20 if every else 8)
    parts = []
    day = start.replace(day=1)
    end = start + dt.timedelta(days=days)
    while day < end:
        shown = max(day, start)
        following = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        # A range starting inside a month names it too, where there is room before the next label.
        room = day < start and (following - start).days * day_width >= 60
        if (day >= start and (day.month - 1) % step == 0) or room:
            x = left + (shown - start).days * day_width
            label = f"{MONTHS[day.month - 1]} {day.year}" if step < 12 else str(day.year)
            attrs = f" class='hm-tick' data-month='{day:%Y-%m}'" if interactive else ""
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top - 6}' y2='{top - 1}' stroke='#8c959f'/>")
            parts.append(f"<text x='{x + 2:.1f}' y='{month_y}' fill='#57606a'{attrs}>{label}</text>")
        day = following
    for index in range(days if every else 0):
        day = start + dt.timedelta(days=index)
        if every == 1 or day.weekday() == 0:
            x = left + (index + 0.5) * day_width if every == 1 else left + index * day_width + 2
            anchor = " text-anchor='middle'" if every == 1 else ""
            parts.append(
                f"<text x='{x:.1f}' y='{top - 6}' font-size='9' fill='#8c959f'{anchor}>{day.day}</text>"
            )
    return parts


def _row(
    row: Mapping[str, Any], start: dt.date, left: float, y: float, day_width: float, interactive: bool
) -> str:
    name = row["processor"]
    cells = []
    for span in row["spans"]:
        index = (dt.date.fromisoformat(span["start"]) - start).days
        x = left + index * day_width
        dates = span["dates"]
        when = span["start"] if dates == 1 else f"{span['start']}..{span['end']}"
        tip = f"{name} {when}: {span['state'].replace('_', ' ')}" + (f" ({dates} dates)" if dates > 1 else "")
        data = (
            f" data-i='{index}' data-n='{dates}' data-state='{escape(span['state'])}'" if interactive else ""
        )
        cells.append(
            f"<rect x='{x:.2f}' y='{y}' width='{dates * day_width:.2f}' height='{CELL_HEIGHT}' "
            f"fill='{color(span['state'])}'{data}><title>{escape(tip)}</title></rect>"
        )
    built = f"{row['built']:,}/{row['expected']:,}"
    end = left + sum(span["dates"] for span in row["spans"]) * day_width
    group = f" class='hm-row' data-processor={quoteattr(name)}" if interactive else ""
    return "".join(
        [
            f"<g{group}>",
            f"<text x='8' y='{y + 10.5}'>{escape(name)}</text>",
            f"<g shape-rendering='crispEdges'>{''.join(cells)}</g>",
            f"<text x='{end + 6:.1f}' y='{y + 10.5}' fill='#57606a'>{built}</text>",
            "</g>",
        ]
    )


def _legend(entries: list[Mapping[str, Any]], left: float, y: float, room: float) -> tuple[list[str], float]:
    """Swatches with labels and counts, as many to a line as fit in ``room``."""
    parts = []
    x = left
    for entry in entries:
        text = f"{entry['label']}: {plural(entry['dates'], 'date')}"
        width = 18 + len(text) * 6.2 + 14
        if x > left and x + width > left + room:
            x, y = left, y + LEGEND_ROW
        parts.append(
            f"<rect x='{x:.1f}' y='{y}' width='12' height='12' fill='{color(entry['state'])}' stroke='#d0d7de'/>"
            f"<text x='{x + 17:.1f}' y='{y + 10}'>{escape(text)}</text>"
        )
        x += width
    return parts, y + LEGEND_ROW
