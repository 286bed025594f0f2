"""Check results as snapshots: ``validate``, ``show``, ``checks history`` and the handoff."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from runbook.formatting import iso_utc
from runbook.snapshots.model import CheckSnapshot, ConditionSnapshot
from runbook.state.records import CheckResult

_PARAMETER = re.compile(r"(?<![@\w])@([A-Za-z_][A-Za-z0-9_]*)")


def _literal(match: re.Match[str], params: Mapping[str, Any]) -> str:
    """The SQL literal of the parameter ``match`` names (the match itself when it has no value)."""
    name = match.group(1)
    if name not in params:
        return match.group(0)
    value = params[name]
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def fill_parameters(query: str, params: Mapping[str, Any]) -> str:
    """The query with ``@name`` parameters replaced by literals, for reading and pasting."""
    return _PARAMETER.sub(lambda match: _literal(match, params), query)


def condition_snapshot(stored: Mapping[str, Any]) -> ConditionSnapshot:
    """A stored condition ({expr, left, op, right, passed, parts?}) in the shape every surface shows."""
    parts = stored.get("parts")
    return ConditionSnapshot(
        expr=str(stored.get("expr", "")),
        value=stored.get("value", stored.get("left")),
        op=stored.get("op"),
        threshold=stored.get("threshold", stored.get("right")),
        passed=bool(stored.get("passed")),
        parts=[condition_snapshot(part) for part in parts if isinstance(part, dict)] if parts else None,
    )


def pasteable(query: str, params: Mapping[str, Any], dialect: str = "bigquery") -> str:
    """The query with its parameters written in, in the SQL of the workspace's warehouse: as
    written (BigQuery) for BigQuery, transpiled for DuckDB (no backticks, DuckDB's functions), so
    it runs when pasted into that warehouse's console. The transpiled text is cached per query:
    only the parameters differ from one result to the next."""
    if dialect != "duckdb" or not query.strip():
        return fill_parameters(query, params).strip()
    translated = _duckdb_text(query.strip())
    if translated is None:
        return fill_parameters(query, params).strip()  # shown as written: better than nothing
    return _DUCKDB_PARAMETER.sub(lambda match: _literal(match, params), translated)


_DUCKDB_PARAMETER = re.compile(r"(?<![$\w])\$([A-Za-z_][A-Za-z0-9_]*)")


@functools.lru_cache(maxsize=256)
def _duckdb_text(query: str) -> str | None:
    """``query`` (BigQuery) as DuckDB SQL laid out on several lines, with ``$name`` parameters."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    from runbook.errors import WarehouseError
    from runbook.warehouse.dialect import SQLGLOT_LOCK, translate

    try:
        statements = translate(query)
    except WarehouseError:
        return None
    parts = []
    for statement in statements:
        try:
            with SQLGLOT_LOCK:
                parts.append(
                    sqlglot.parse_one(statement.duckdb_sql, read="duckdb").sql(dialect="duckdb", pretty=True)
                )
        except SqlglotError:
            parts.append(statement.duckdb_sql)
    return ";\n".join(parts)


def check_snapshot(
    result: CheckResult, descriptions: Mapping[tuple[str, str], str] | None = None, dialect: str = "bigquery"
) -> CheckSnapshot:
    """One check result; ``dialect`` (``bigquery`` or ``duckdb``, the workspace warehouse's kind)
    is the SQL its ``filled_query`` is written in."""
    params = dict(result.params)
    return CheckSnapshot(
        id=result.id,
        run_id=result.run_id,
        processor=result.processor,
        check=result.check_name,
        description=(descriptions or {}).get((result.processor, result.check_name), ""),
        severity=result.severity,
        passed=bool(result.passed),
        start_date=result.start_date,
        end_date=result.end_date,
        metrics=dict(result.metrics),
        conditions=[condition_snapshot(c) for c in result.conditions if isinstance(c, dict)],
        error=result.error,
        query=result.query,
        filled_query=pasteable(result.query, params, dialect),
        params=params,
        at=iso_utc(result.at),
        per_date=bool(result.per_date),
        failed_dates=list(result.failed_dates or []),
        samples=list(result.samples or []),
        changed_dates=list(result.changed_dates or []),
    )


def merge_per_date(results: Sequence[CheckResult]) -> list[CheckResult]:
    """The results with each per-date check's windows in one run (one result per gate window)
    merged into one result over all of them; the newest result of a window wins. Range-wide
    results are kept as they are."""
    groups: dict[tuple[int | None, str, str], list[CheckResult]] = {}
    order: list[CheckResult | tuple[int | None, str, str]] = []
    for result in results:
        if not result.per_date or result.run_id is None:
            order.append(result)
            continue
        key = (result.run_id, result.processor, result.check_name)
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(result)
    merged = []
    for item in order:
        merged.append(item if isinstance(item, CheckResult) else _merge(groups[item]))
    return merged


def _merge(results: list[CheckResult]) -> CheckResult:
    windows: dict[tuple[str, str], CheckResult] = {}
    for result in sorted(results, key=lambda r: r.id):
        windows[(result.start_date, result.end_date)] = result
    parts = sorted(windows.values(), key=lambda r: r.start_date)
    if len(parts) == 1:
        return parts[0]
    newest = max(parts, key=lambda r: r.id)
    counts = {
        key: sum(int(r.metrics.get(key) or 0) for r in parts)
        for key in ("dates", "passed_dates", "failed_dates")
    }
    conditions = []
    for index, condition in enumerate(newest.conditions):
        same = [r.conditions[index] for r in parts if len(r.conditions) > index]
        conditions.append(
            {**condition, "passed": all(c.get("passed") for c in same),
             "failed_dates": sum(int(c.get("failed_dates") or 0) for c in same)}
        )  # fmt: skip
    errors = list(dict.fromkeys(r.error for r in parts if r.error))
    return replace(
        newest,
        passed=all(r.passed for r in parts),
        start_date=parts[0].start_date,
        end_date=max(r.end_date for r in parts),
        metrics=counts,
        conditions=conditions,
        params={"start": parts[0].start_date, "end": max(r.end_date for r in parts)},
        error="; ".join(errors) or None,
        failed_dates=[entry for r in parts for entry in (r.failed_dates or [])],
        samples=[entry for r in parts for entry in (r.samples or [])][:5] or None,
        changed_dates=[entry for r in parts for entry in (r.changed_dates or [])] or None,
    )


def check_history(
    results: Iterable[CheckResult], *, limit: int | None, dialect: str = "bigquery"
) -> list[dict[str, Any]]:
    """Results grouped per (processor, check), oldest first, with each numeric metric's series."""
    groups: dict[tuple[str, str], list[CheckResult]] = {}
    for result in merge_per_date(list(results)):
        groups.setdefault((result.processor, result.check_name), []).append(result)
    checks = []
    for (processor, name), rows in groups.items():
        rows = rows[-limit:] if limit else rows
        names = dict.fromkeys(
            key
            for row in rows
            for key, value in row.metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        )
        checks.append(
            {
                "processor": processor,
                "check": name,
                "severity": rows[-1].severity,
                "results": [check_snapshot(row, dialect=dialect) for row in rows],
                "series": {key: [row.metrics.get(key) for row in rows] for key in names},
            }
        )
    return checks
