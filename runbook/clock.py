"""The one clock: aware UTC datetimes everywhere (a test may hand in another ``now``)."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
