"""The task graph in the state store: what waits for what in a run, and how waits settle.

- ``task.waits`` counts a task's unsettled dependencies: upstream tasks (``task_dep``) and blocking
  gates (``gate_dep``); a gate's ``waits`` counts its processor's tasks that are not finished. A
  pending task with ``waits = 0`` (and no retry delay left) is *ready* (``runbook.state.queue``).
- Settling is done by the writes that cause it, in their own transaction: a success releases its
  dependents, a final failure blocks everything downstream, a skip for missing data skips it, and
  each finished task counts for its gate. The statements for it are here, beside the recount that
  repairs every wait of a run from what the store says.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from runbook.kinds import SkipReason, TaskStatus
from runbook.state import latest
from runbook.state.connect import Database


class Need(NamedTuple):
    """Tasks of ``processor`` wait for the tasks of ``upstream`` that cover their dates."""

    processor: str
    upstream: str
    upstream_span_days: int  # the most calendar days one task of the upstream covers


class GateSpec(NamedTuple):
    """The checks of ``processor``; with ``blocking``, the tasks of ``downstream`` wait for them.
    With ``window_days``, its per-date checks: one gate per window of that many days."""

    processor: str
    blocking: bool
    downstream: list[str]
    window_days: int = 0


class Links(NamedTuple):
    """What waits for what in one run, by processor (``runbook.engine.graph.links``)."""

    needs: list[Need]
    past: list[str]  # processors whose tasks wait for their own previous task
    gates: list[GateSpec]


class TaskGraph:
    """Mixed into :class:`runbook.state.store.Store` (which provides ``db``, ``_write`` and
    ``transaction``)."""

    db: Database

    def _write(self, action: Callable[[Database], Any]) -> Any:
        raise NotImplementedError

    # -- the graph --------------------------------------------------------------------------------

    def add_graph(self, run_id: int, links: Links) -> None:
        """Record what waits for what in run ``run_id`` (tasks that are not skipped), then count
        each task's waits: a few statements, whatever the size of the run."""

        def add(db: Database) -> None:
            with db.transaction():
                for need in links.needs:
                    # Upstream tasks that cover a date of the task: they start at most
                    # upstream_span_days - 1 days before it (the index then reads a short range).
                    low = _days_before(db, "d.date", need.upstream_span_days - 1)
                    db.execute(
                        "INSERT INTO task_dep (upstream_id, task_id) SELECT u.id, d.id FROM task d "
                        "JOIN task u ON u.run_id = d.run_id AND u.processor = :up "
                        f"AND u.date >= {low} AND u.date <= d.end_date AND u.end_date >= d.date "
                        "WHERE d.run_id = :run AND d.processor = :p AND d.status <> 'skipped' "
                        "AND u.status <> 'skipped'",
                        {"run": run_id, "p": need.processor, "up": need.upstream},
                    )
                for processor in links.past:
                    db.execute(
                        "INSERT INTO task_dep (upstream_id, task_id) SELECT previous, id FROM ("
                        "SELECT id, LAG(id) OVER (ORDER BY date) AS previous FROM task "
                        "WHERE run_id = :run AND processor = :p AND status <> 'skipped') ordered "
                        "WHERE previous IS NOT NULL",
                        {"run": run_id, "p": processor},
                    )
                for gate in links.gates:
                    if gate.window_days:
                        _add_date_gates(db, run_id, gate)
                        continue
                    if not db.scalar(
                        "SELECT 1 FROM task WHERE run_id = :run AND processor = :p AND status <> 'skipped' LIMIT 1",
                        {"run": run_id, "p": gate.processor},
                    ):
                        continue  # nothing of it runs: its checks are not judged again
                    gate_id = db.insert(
                        "INSERT INTO gate (run_id, processor, blocking, status, waits) "
                        "VALUES (:run, :processor, :blocking, 'pending', 0) RETURNING id",
                        {"run": run_id, "processor": gate.processor, "blocking": gate.blocking},
                    )
                    if gate.downstream:
                        db.execute(
                            "INSERT INTO gate_dep (gate_id, task_id) SELECT :gate, id FROM task "
                            "WHERE run_id = :run AND processor IN :downstream AND status <> 'skipped'",
                            {"gate": gate_id, "run": run_id, "downstream": gate.downstream},
                        )
                _recompute_waits(db, run_id)

        self._write(add)

    def has_graph(self, run_id: int) -> bool:
        """Whether the run's dependencies are recorded (runs made before 0003 lack them)."""
        found = self.db.scalar(
            "SELECT 1 FROM task_dep d JOIN task t ON t.id = d.task_id WHERE t.run_id = :run LIMIT 1",
            {"run": run_id},
        ) or self.db.scalar("SELECT 1 FROM gate WHERE run_id = :run LIMIT 1", {"run": run_id})
        return bool(found)


# -- the statements behind the methods --------------------------------------------------------------


def _days_before(db: Database, column: str, days: int) -> str:
    """SQL for the ISO date ``days`` days before the ISO date in ``column``."""
    if days <= 0:
        return column
    if db.dialect == "sqlite":
        return f"date({column}, '-{int(days)} days')"
    return f"to_char(CAST({column} AS date) - {int(days)}, 'YYYY-MM-DD')"


# Rows picked by id test their status through an expression, so that the database looks them up
# by id instead of walking every task of that status (SQLite's planner has no statistics to know
# better, and PostgreSQL's has none yet for a new run).
PENDING_BY_ID = "status || '' = 'pending'"
RUNNING_BY_ID = "status || '' = 'running'"


def _release(db: Database, task_ids: Sequence[int], settled: int = 1) -> None:
    """``settled`` dependencies of each of ``task_ids`` are settled."""
    for start in range(0, len(task_ids), 500):
        db.execute(
            f"UPDATE task SET waits = waits - :n WHERE id IN :ids AND {PENDING_BY_ID}",
            {"ids": list(task_ids[start : start + 500]), "n": settled},
        )


_DOWNSTREAM = """
WITH RECURSIVE down(id) AS (
    SELECT d.task_id FROM task_dep d WHERE d.upstream_id IN :ids
    UNION
    SELECT d.task_id FROM task_dep d JOIN down ON d.upstream_id = down.id
)
SELECT task.id FROM down JOIN task ON task.id = down.id WHERE task.status = 'pending'
"""


def _cascade(
    db: Database,
    roots: Sequence[int],
    status: str,
    reason: str,
    now: dt.datetime,
    *,
    skip_reason: str | None = None,
    include_roots: bool = False,
) -> None:
    """Mark everything pending downstream of ``roots`` (and the roots themselves if asked) blocked
    or skipped, counting each for its processor's gate."""
    found = {
        int(r[0])
        for start in range(0, len(roots), 500)
        for r in db.rows(_DOWNSTREAM, {"ids": list(roots[start : start + 500])})
    }
    if include_roots:
        found.update(roots)
    ids = sorted(found)
    marked: list[tuple[int, str, str]] = []
    for start in range(0, len(ids), 500):
        rows = db.rows(
            "UPDATE task SET status = :status, finished_at = :now, lease_until = NULL, error_tail = :reason, "
            f"skip_reason = COALESCE(:skip, skip_reason) WHERE id IN :ids AND {PENDING_BY_ID} "
            "RETURNING run_id, processor, date",
            {
                "ids": ids[start : start + 500],
                "status": status,
                "now": now,
                "reason": reason,
                "skip": skip_reason,
            },
        )
        marked += [(int(r[0]), str(r[1]), str(r[2])) for r in rows]
        db.execute(latest.OF_TASKS, {"ids": ids[start : start + 500]})
    _gates_done(db, marked)


def _gates_done(db: Database, finished: Sequence[tuple[int, str, str]]) -> bool:
    """Tasks of these (run, processor, date) are finished: their gates (the processor's gate,
    and the per-date gate whose window holds the date) wait for one fewer each.
    True when one of them has nothing left to wait for (it is ready to be judged)."""
    ready = False
    for (run_id, processor, day), count in Counter(finished).items():
        rows = db.rows(
            "UPDATE gate SET waits = waits - :n WHERE run_id = :run AND processor = :p AND status = 'pending' "
            "AND (start_date = '' OR (start_date <= :day AND end_date >= :day)) RETURNING waits",
            {"n": count, "run": run_id, "p": processor, "day": day},
        )
        ready = ready or any(int(row[0]) <= 0 for row in rows)
    return ready


def _add_date_gates(db: Database, run_id: int, gate: GateSpec) -> None:
    """One gate per window of ``gate.window_days`` days of the processor's runnable tasks; the
    downstream tasks whose dates touch a window wait for its gate."""
    days = [
        (str(r[0]), str(r[1]))
        for r in db.rows(
            "SELECT date, end_date FROM task WHERE run_id = :run AND processor = :p AND status <> 'skipped' "
            "ORDER BY date",
            {"run": run_id, "p": gate.processor},
        )
    ]
    windows: list[list[str]] = []
    for first, last in days:
        if windows and dt.date.fromisoformat(first) <= dt.date.fromisoformat(windows[-1][0]) + dt.timedelta(
            days=gate.window_days - 1
        ):
            windows[-1][1] = max(windows[-1][1], last)
        else:
            windows.append([first, last])
    for start, end in windows:
        gate_id = db.insert(
            "INSERT INTO gate (run_id, processor, blocking, status, waits, start_date, end_date) "
            "VALUES (:run, :processor, :blocking, 'pending', 0, :start, :end) RETURNING id",
            {
                "run": run_id,
                "processor": gate.processor,
                "blocking": gate.blocking,
                "start": start,
                "end": end,
            },
        )
        if gate.downstream:
            db.execute(
                "INSERT INTO gate_dep (gate_id, task_id) SELECT :gate, id FROM task "
                "WHERE run_id = :run AND processor IN :downstream AND status <> 'skipped' "
                "AND date <= :end AND end_date >= :start",
                {"gate": gate_id, "run": run_id, "downstream": gate.downstream, "start": start, "end": end},
            )


def _split_by_dates(
    db: Database, task_ids: Sequence[int], failed_dates: Mapping[str, str]
) -> tuple[dict[str, list[int]], list[int]]:
    """The tasks that cover a failed date (by the message of their first failed date), and the others."""
    hit: dict[str, list[int]] = {}
    free: list[int] = []
    failed = sorted(failed_dates)
    for start in range(0, len(task_ids), 500):
        for task_id, first, last in db.rows(
            "SELECT id, date, end_date FROM task WHERE id IN :ids",
            {"ids": list(task_ids[start : start + 500])},
        ):
            day = next((d for d in failed if str(first) <= d <= str(last)), None)
            if day is None:
                free.append(int(task_id))
            else:
                hit.setdefault(failed_dates[day], []).append(int(task_id))
    return hit, free


def _recompute_waits(db: Database, run_id: int) -> None:
    """Count each pending task's unsettled dependencies (and each pending gate's unfinished tasks)
    again from what the store says: a repair that makes any interruption harmless."""
    # One pass of counts joined to the pending tasks, and only the tasks whose count changed are
    # written: a fresh run (every count already right) writes nothing.
    db.execute(
        "UPDATE task SET waits = c.n FROM ("
        "SELECT t.id AS id, COALESCE(dn.n, 0) + COALESCE(gn.n, 0) AS n FROM task t "
        "LEFT JOIN (SELECT d.task_id, COUNT(*) AS n FROM task_dep d JOIN task x ON x.id = d.task_id "
        " JOIN task u ON u.id = d.upstream_id WHERE x.run_id = :run AND x.status = 'pending' "
        " AND u.status <> 'succeeded' AND NOT (u.status = 'skipped' AND u.skip_reason = 'already_done') "
        " GROUP BY d.task_id) dn ON dn.task_id = t.id "
        "LEFT JOIN (SELECT gd.task_id, COUNT(*) AS n FROM gate_dep gd JOIN gate g ON g.id = gd.gate_id "
        " WHERE g.run_id = :run AND g.status <> 'passed' GROUP BY gd.task_id) gn ON gn.task_id = t.id "
        "WHERE t.run_id = :run AND t.status = 'pending') c "
        "WHERE task.id = c.id AND task.waits <> c.n",
        {"run": run_id},
    )
    db.execute(
        "UPDATE gate SET waits = (SELECT COUNT(*) FROM task t WHERE t.run_id = gate.run_id "
        "AND t.processor = gate.processor AND t.status IN ('pending', 'running') "
        "AND (gate.start_date = '' OR (t.date >= gate.start_date AND t.date <= gate.end_date))) "
        "WHERE run_id = :run AND status = 'pending'",
        {"run": run_id},
    )
    # A pending task whose upstream failed, was blocked or skipped can never start: settle it now.
    # Read from the upstream side (a task's dependencies are in its own run): the run's few
    # settled tasks through ix_task_run_status, then their dependents by id, instead of every
    # pending task of the run and its dependencies (0.8-3.5 s at 1,000,000 tasks).
    settled = db.rows(
        "SELECT DISTINCT u.id, u.status, u.processor, u.date FROM task u JOIN task_dep d ON d.upstream_id = u.id "
        "JOIN task t ON t.id = d.task_id WHERE u.run_id = :run "
        "AND u.status IN ('failed', 'blocked', 'skipped', 'cancelled') "
        "AND NOT (u.status = 'skipped' AND u.skip_reason = 'already_done') "  # built by another run
        f"AND t.run_id = :run AND t.{PENDING_BY_ID}",
        {"run": run_id},
    )
    now = dt.datetime.now(dt.UTC)
    for upstream, status, processor, day in settled:
        if status == TaskStatus.SKIPPED:
            _cascade(db, [int(upstream)], TaskStatus.SKIPPED, f"upstream {processor} {day} skipped", now,
                     skip_reason=SkipReason.UPSTREAM_MISSING)  # fmt: skip
        else:
            _cascade(db, [int(upstream)], TaskStatus.BLOCKED, f"upstream {processor} {day} {status}", now)


__all__ = [
    "GateSpec",
    "Links",
    "Need",
    "TaskGraph",
]
