"""Check results as snapshots: ``validate``, ``show``, ``checks history`` and the handoff."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from runbook.formatting import iso_utc
from runbook.snapshots.model import CheckSnapshot, ConditionSnapshot
from runbook.state.records import CheckResult

_PARAMETER = re.compile(r"(?<![@\w])@([A-Za-z_][A-Za-z0-9_]*)")


def fill_parameters(query: str, params: Mapping[str, Any]) -> str:
    """The query with ``@name`` parameters replaced by literals, for reading and pasting."""

    def literal(match: re.Match[str]) -> str:
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

    return _PARAMETER.sub(literal, query)


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
    it runs when pasted into that warehouse's console."""
    filled = fill_parameters(query, params).strip()
    if dialect != "duckdb" or not filled:
        return filled
    from runbook.errors import WarehouseError
    from runbook.warehouse.dialect import translate

    try:
        statements = translate(filled)
    except WarehouseError:
        return filled  # shown as written: better than nothing
    return ";\n".join(_pretty(statement.duckdb_sql) for statement in statements)


def _pretty(sql: str) -> str:
    """DuckDB SQL laid out on several lines, for reading (as is if it cannot be laid out)."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        return sqlglot.parse_one(sql, read="duckdb").sql(dialect="duckdb", pretty=True)
    except SqlglotError:
        return sql


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
    )


def check_history(
    results: Iterable[CheckResult], *, limit: int | None, dialect: str = "bigquery"
) -> list[dict[str, Any]]:
    """Results grouped per (processor, check), oldest first, with each numeric metric's series."""
    groups: dict[tuple[str, str], list[CheckResult]] = {}
    for result in results:
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
