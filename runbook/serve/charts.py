"""Small inline SVG charts: a check's metric over its results, and a run's progress bar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from runbook.reports.heatmap import COLORS

WIDTH, HEIGHT, PAD = 260, 64, 6


def metric_chart(
    name: str, values: Sequence[Any], passed: Sequence[bool], labels: Sequence[str], threshold: float | None
) -> str:
    """``values`` of metric ``name`` over a check's results (oldest first) as a line with a dot per
    result, green where the result passed and red where it failed, and the condition's threshold
    as a dashed line. Missing values leave a gap."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers:
        return ""
    scale = [*numbers, *([threshold] if threshold is not None else [])]
    low, high = min(scale), max(scale)
    if high == low:
        low, high = low - 1, high + 1
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)

    def y(value: float) -> float:
        return PAD + (HEIGHT - 2 * PAD) * (high - value) / (high - low)

    points: list[str] = []
    dots: list[str] = []
    segments: list[str] = []
    for index, (value, ok, label) in enumerate(zip(values, passed, labels, strict=True)):
        if not isinstance(value, int | float) or isinstance(value, bool):
            if points:
                segments.append(" ".join(points))
                points = []
            continue
        x = PAD + index * step if len(values) > 1 else WIDTH / 2
        points.append(f"{x:.1f},{y(float(value)):.1f}")
        fill = COLORS["succeeded"] if ok else COLORS["failed"]
        dots.append(
            f"<circle cx='{x:.1f}' cy='{y(float(value)):.1f}' r='3' fill='{fill}' class='{'pass' if ok else 'fail'}'>"
            f"<title>{escape(f'{name} = {_number(value)} ({label})')}</title></circle>"
        )
    if points:
        segments.append(" ".join(points))
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img' aria-label='{escape(name)}'>",
        f"<rect width='{WIDTH}' height='{HEIGHT}' fill='#f6f8fa' rx='4'/>",
    ]
    if threshold is not None:
        parts.append(
            f"<line x1='{PAD}' x2='{WIDTH - PAD}' y1='{y(threshold):.1f}' y2='{y(threshold):.1f}' "
            f"stroke='#57606a' stroke-dasharray='4 3'><title>threshold {_number(threshold)}</title></line>"
        )
    for value, at in ((high, PAD + 8), (low, HEIGHT - PAD)):  # the scale: its top and bottom values
        parts.append(
            f"<text x='{WIDTH - PAD}' y='{at}' font-size='9' fill='#8c959f' text-anchor='end'>{_number(value)}</text>"
        )
    parts += [
        f"<polyline points='{line}' fill='none' stroke='#0969da' stroke-width='1.5'/>" for line in segments
    ]
    parts += dots
    parts.append("</svg>")
    return "".join(parts)


def threshold_of(name: str, conditions: Sequence[Mapping[str, Any]]) -> float | None:
    """The threshold a condition compares metric ``name`` with (``pct >= 45`` gives 45)."""
    for condition in conditions:
        threshold = condition.get("threshold")
        words = str(condition.get("expr", "")).split()
        if (
            words
            and words[0] == name
            and isinstance(threshold, int | float)
            and not isinstance(threshold, bool)
        ):
            return float(threshold)
    return None


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
