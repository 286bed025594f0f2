"""How values are written, in one place: times, spans, durations, percentages and counts.

Every surface (terminal tables, ``--json``, the handoff) goes through these, so one run reads
the same everywhere. The rounding rule, documented in docs/json.md:

- a percentage is rounded *down* to one decimal (99.96 % of the work is ``99.9``, never ``100.0``);
- a rate is rounded to one decimal, an ETA up to whole seconds;
- times are UTC ISO 8601 with a ``Z``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any


def as_utc(value: Any) -> dt.datetime | None:
    """A UTC datetime from a datetime or from the text SQLite keeps for one (None stays None)."""
    if value is None or value == "":
        return None
    moment: dt.datetime = (
        dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    )
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def iso_utc(value: Any) -> str | None:
    """ISO 8601 UTC with a ``Z``, from a datetime or SQLite's text for one."""
    moment = as_utc(value)
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def span(start: str, end: str | None) -> str:
    """``2024-01-01`` for one date, ``2024-01-01..2024-01-05`` for several."""
    return start if not end or end == start else f"{start}..{end}"


def duration(seconds: Any, missing: str = "—") -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``; ``missing`` when unknown."""
    if seconds is None:
        return missing
    total = int(round(float(seconds)))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{(total % 3600) // 60:02d}m"
    return f"{total // 86400}d{(total % 86400) // 3600:02d}h"


def percent(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, rounded down to one decimal; None when ``whole`` is 0."""
    if whole <= 0:
        return None
    return int(part * 1000 // whole) / 10


def rate(value: float | None) -> float | None:
    """A rate per hour as reported: one decimal."""
    return None if value is None else round(value, 1)


def number(value: Any, missing: str = "—") -> str:
    """A count or a rate with thousands separators, one decimal only below 100."""
    if value is None:
        return missing
    if isinstance(value, float) and not value.is_integer() and abs(value) < 100:
        return f"{value:,.1f}"
    return f"{round(value):,}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 date``, ``1,856 dates``."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def human_bytes(value: int | float | None, missing: str = "—") -> str:
    """Bytes in binary units as BigQuery's console shows them: ``1.5 GiB``, ``320 MiB``, ``0 B``."""
    if value is None:
        return missing
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "PiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} PiB"


_EXIT_LINE = re.compile(r"^exit code -?\d+$")


def error_line(error: str | None) -> str:
    """The line that says what went wrong: the last one, unless that is only ``exit code N``
    (at most 300 characters; ``(no error output)`` when there is none)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    if not lines:
        return "(no error output)"
    meaningful = [line for line in lines if not _EXIT_LINE.match(line)]
    return (meaningful or lines)[-1][:300]


def bursts(events: Any, least: int = 3) -> list[dict[str, Any]]:
    """Timeline rows: ``least`` or more events in a row of one kind, run and processor (dates
    failing one after another) become one row, the newest of them with ``count``, ``first_at`` and
    the events it stands for (``folded``, oldest first); the others are rows of their own
    (``count`` 1, ``folded`` empty)."""
    groups: list[list[dict[str, Any]]] = []
    for event in events:
        key = (event["kind"], event.get("run_id"), event.get("processor"))
        if (
            groups
            and (groups[-1][0]["kind"], groups[-1][0].get("run_id"), groups[-1][0].get("processor")) == key
        ):
            groups[-1].append(event)
        else:
            groups.append([event])
    rows: list[dict[str, Any]] = []
    for group in groups:
        if len(group) >= least:
            rows.append({**group[-1], "count": len(group), "first_at": group[0]["at"], "folded": group})
        else:
            rows.extend({**event, "count": 1, "first_at": event["at"], "folded": []} for event in group)
    return rows
