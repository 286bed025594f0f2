"""Small formatters shared by the terminal tables and the handoff reports."""

from __future__ import annotations

from typing import Any


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
