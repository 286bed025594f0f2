"""The read model: the state store turned into typed snapshots that every surface renders.

``runbook status --json``, the terminal tables, the handoff, the dashboard and the MCP server all
show the same :class:`~runbook.snapshots.model.RunSnapshot` for a run, built by the functions of
:mod:`runbook.snapshots.runs` in a few aggregate queries, whatever the size of the store.
:func:`to_data` turns any snapshot into JSON-ready data (docs/json.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from enum import Enum
from typing import Any

JSON_SCHEMA_VERSION = 2


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
