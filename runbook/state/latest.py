"""The ``task_latest`` projection: per processor and first date, the newest task of each outcome.

Three slots per date: *built* (the newest succeeded task), *attempt* (the newest succeeded,
failed or blocked one) and *skipped* (the newest skipped one), each with the columns coverage
needs. The store upserts them in the same transaction as the outcome it records, and a slot only
ever moves to a newer task (a higher id), so two writers racing leave the newest.
"""

from __future__ import annotations

SLOTS: dict[str, tuple[str, dict[str, str]]] = {
    # slot: (the statuses that fill it, {projection column: task column})
    "built": (
        "'succeeded'",
        {"built_id": "id", "built_run_id": "run_id", "built_end_date": "end_date", "built_version": "code_version",
         "built_rows": "rows_affected", "built_at": "finished_at"},
    ),
    "attempt": (
        "'succeeded', 'failed', 'blocked'",
        {"attempt_id": "id", "attempt_run_id": "run_id", "attempt_end_date": "end_date", "attempt_status": "status",
         "attempt_tries": "attempt", "attempt_exit_code": "exit_code"},
    ),
    "skipped": (
        "'skipped'",
        {"skipped_id": "id", "skipped_run_id": "run_id", "skipped_end_date": "end_date", "skip_reason": "skip_reason"},
    ),
}  # fmt: skip
COLUMNS = [column for _, mapping in SLOTS.values() for column in mapping]
# The task columns the slots read (what a source of ``upsert_from`` must return).
SOURCE_COLUMNS = sorted({"processor", "date", "status", *(c for _, m in SLOTS.values() for c in m.values())})


def _select(alias: str) -> str:
    parts = []
    for statuses, mapping in SLOTS.values():
        for column, source in mapping.items():
            parts.append(f"CASE WHEN {alias}.status IN ({statuses}) THEN {alias}.{source} END AS {column}")
    return ", ".join(parts)


def _update() -> str:
    sets = []
    for mapping in (mapping for _, mapping in SLOTS.values()):
        key = next(iter(mapping))  # the slot's task id decides: only a newer task replaces it
        newer = f"excluded.{key} > COALESCE(task_latest.{key}, 0)"
        for column in mapping:
            sets.append(f"{column} = CASE WHEN {newer} THEN excluded.{column} ELSE task_latest.{column} END")
    return ",\n  ".join(sets)


def upsert(where: str, status: str = "t.status") -> str:
    """Record the outcomes of the tasks ``where`` selects (at most one per processor and date);
    ``status`` is how the filter on their status reads the column."""
    return (
        f"INSERT INTO task_latest (processor, date, {', '.join(COLUMNS)})\n"
        f"SELECT t.processor, t.date, {_select('t')}\n"
        f"FROM task t WHERE {where} AND {status} IN ('succeeded', 'failed', 'blocked', 'skipped')\n"
        f"ON CONFLICT (processor, date) DO UPDATE SET\n  {_update()}"
    )


def upsert_from(source: str) -> str:
    """Record the outcomes of the rows of ``source`` (a CTE returning the task columns slots read,
    at most one row per processor and date)."""
    return (
        f"INSERT INTO task_latest (processor, date, {', '.join(COLUMNS)})\n"
        f"SELECT t.processor, t.date, {_select('t')}\n"
        f"FROM {source} t WHERE t.status IN ('succeeded', 'failed', 'blocked', 'skipped')\n"
        f"ON CONFLICT (processor, date) DO UPDATE SET\n  {_update()}"
    )


def backfill() -> str:
    """Fill an empty ``task_latest`` from every task there is (the migration that adds it)."""
    joins = []
    picks = []
    for slot, (statuses, _) in SLOTS.items():
        picks.append(f"MAX(CASE WHEN status IN ({statuses}) THEN id END) AS {slot}")
        joins.append(f"LEFT JOIN task {slot[0]} ON {slot[0]}.id = g.{slot}")
    columns = [f"{slot[0]}.{source}" for slot, (_, mapping) in SLOTS.items() for source in mapping.values()]
    return (
        f"INSERT INTO task_latest (processor, date, {', '.join(COLUMNS)})\n"
        f"SELECT g.processor, g.date, {', '.join(columns)}\n"
        f"FROM (SELECT processor, date, {', '.join(picks)} FROM task\n"
        f"      WHERE status IN ('succeeded', 'failed', 'blocked', 'skipped') GROUP BY processor, date) g\n"
        + "\n".join(joins)
    )


# Tasks picked by id test their status through an expression: else SQLite reads every finished
# task of the store through ix_task_status_lease instead of looking the ids up.
OF_TASKS = upsert("t.id IN :ids", "t.status || ''")
OF_RUN = upsert("t.run_id = :run")
READ = (
    f"SELECT date, {', '.join(COLUMNS)} FROM task_latest "
    "WHERE processor = :processor AND date >= :start AND date <= :end ORDER BY date"
)
# Every processor's dates in one statement (the heat map, the handoff's status tables).
READ_MANY = (
    f"SELECT processor, date, {', '.join(COLUMNS)} FROM task_latest "
    "WHERE processor IN :processors AND date >= :start AND date <= :end ORDER BY processor, date"
)
