"""The read model: the state store turned into typed snapshots that every surface renders.

``runbook status --json``, the terminal tables, the handoff, the dashboard and the MCP server all
show the same :class:`~runbook.snapshots.model.RunSnapshot` for a run, built by the functions of
:mod:`runbook.snapshots.runs` in a few aggregate queries, whatever the size of the store.
:func:`to_data` turns any snapshot into JSON-ready data (docs/json.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import threading
from collections.abc import Iterator
from enum import Enum
from typing import Any

JSON_SCHEMA_VERSION = 2

_pauses = 0
_resume_collector = False
_pause_lock = threading.Lock()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a big read model is built.

    A handoff over a million task rows makes some hundred thousand objects that all live until
    it is rendered: the collector would walk them again and again (a hundred collections, a
    third of the time) and free nothing. Reference counting still frees everything as usual;
    the collector resumes when the last of the threads that paused it is done (``runbook
    serve`` pauses it for each request's work, on several threads at once), unless it was off
    before.
    """
    global _pauses, _resume_collector
    with _pause_lock:
        if _pauses == 0:
            _resume_collector = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume_collector:
                gc.enable()


_PLAIN = frozenset({str, int, float, bool, type(None)})  # exact types: a StrEnum is not plain


def to_data(value: Any) -> Any:
    """A snapshot (or what holds snapshots) as plain JSON data: dicts, lists, strings, numbers."""
    kind = type(value)
    if kind in _PLAIN:  # most values: answered before the slower checks below
        return value
    if kind is list:
        return [to_data(item) for item in value]
    if kind is dict:
        return {str(key): to_data(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a snapshot (named tuple)
        return {name: to_data(item) for name, item in zip(value._fields, value, strict=True)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): to_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def document(**parts: Any) -> dict[str, Any]:
    """A top-level JSON document: ``schema_version`` first, then ``parts`` as data."""
    return {"schema_version": JSON_SCHEMA_VERSION, **{key: to_data(value) for key, value in parts.items()}}
