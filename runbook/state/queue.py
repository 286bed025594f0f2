"""The work queue in the state store: claims, results and their consequences.

Readiness lives here, not in one process's memory, so that a run's controller and any number of
``runbook worker`` processes on any machine can share it:

- A pending task with ``waits = 0`` (and no retry delay left) is *ready*: ``task.waits`` counts its
  unsettled dependencies (``runbook.state.graph``).
- Recording a result settles what depends on it in the same transaction: a success releases its
  dependents, a final failure blocks everything downstream, a skip for missing data skips it.
- A task's holder holds it by **lease**: its result is recorded only while it still holds the
  task. An owner's claims are conditional on its run's epoch (``runbook.state.ownership``).
- Claims are serialised (SQLite's write lock, a transaction-scoped advisory lock on PostgreSQL),
  so pools and per-processor caps hold across every process: a running task counts against its
  pool while its lease is current.

Every method is one transaction: whatever happens to the process afterwards, the store is
consistent, and ``runbook resume`` continues from it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from runbook.kinds import RunStatus, SkipReason, TaskStatus
from runbook.state import latest
from runbook.state.connect import Array, Database
from runbook.state.graph import PENDING_BY_ID, RUNNING_BY_ID, _cascade, _gates_done, _release, _split_by_dates
from runbook.state.records import Gate, Task, from_rows

if TYPE_CHECKING:
    from runbook.state.task_queries import TASK_COLUMNS as TASK_COLUMNS  # noqa: F401

ERROR_TAIL_CHARS = 4000
CLAIM_LOCK = 0x72756E62_0002  # PostgreSQL advisory lock keys: "runb" + a number
GATE_COLUMNS = "id, run_id, processor, blocking, status, waits, claimed_by, lease_until, message, finished_at, start_date, end_date"


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt of a task, as the holder records it."""

    task: Task
    status: str  # succeeded, failed, skipped, or pending (a retry, or an attempt handed back)
    exit_code: int | None = None
    error: str | None = None
    rows_affected: int | None = None
    seconds: float | None = None
    retry_at: dt.datetime | None = None
    skip_reason: str | None = None
    returned: bool = False  # handed back unfinished (a stop): the attempt does not count
    started: dt.datetime | None = None  # when the step started and ended (default: when recorded)
    finished: dt.datetime | None = None
    bytes_processed: int | None = None  # what the attempt's warehouse jobs cost
    bytes_billed: int | None = None
    slot_ms: int | None = None


class Orphan(NamedTuple):
    """A task claimed from a holder whose lease ran out, with its step's PID if it was recorded."""

    run_id: int
    task_id: int
    pid: int | None
    holder: str


@dataclass
class Claimed:
    """What one claim got: tasks to run, gates to judge, and runs this owner no longer owns."""

    tasks: list[Task] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    # Tasks taken over from a holder whose lease ran out: the claimant ends their steps if they
    # still run on its machine (by the recorded PID, or by the token in their environment).
    orphans: list[Orphan] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """A run to claim from: its id, the owner's epoch (None for a worker), the processors this
    process may run (None: all)."""

    run_id: int
    epoch: int | None = None
    processors: frozenset[str] | None = None
    gated: frozenset[str] | None = None  # its processors that have a gate (None: not known)


class WorkQueue:
    """Mixed into :class:`runbook.state.store.Store` (which provides ``db``, ``_write`` and
    ``transaction``)."""

    db: Database

    def _write(self, action: Callable[[Database], Any]) -> Any:
        raise NotImplementedError

    # -- claims -----------------------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        sources: Sequence[Source],
        *,
        limit: int,
        pools: Mapping[str, int],
        caps: Mapping[str, int],
        now: dt.datetime,
        lease_until: dt.datetime,
        gates: bool = True,
        expired: bool = True,
    ) -> Claimed:
        """Claim up to ``limit`` ready tasks (and any ready gates) of ``sources`` for ``worker``
        (see :meth:`exchange`)."""
        return self.exchange(
            worker, [], sources, limit=limit, pools=pools, caps=caps, now=now, lease_until=lease_until,
            gates=gates, expired=expired,
        )[1]  # fmt: skip

    def record(self, worker: str, outcomes: Sequence[Outcome], now: dt.datetime) -> list[bool]:
        """Record attempts' outcomes and settle their consequences, all in one transaction (see
        :meth:`exchange`)."""
        return self.exchange(worker, outcomes, [], limit=0, pools={}, caps={}, now=now, lease_until=now,
                             gates=False)[0]  # fmt: skip

    def exchange(
        self,
        worker: str,
        outcomes: Sequence[Outcome],
        sources: Sequence[Source],
        *,
        limit: int,
        pools: Mapping[str, int],
        caps: Mapping[str, int],
        now: dt.datetime,
        lease_until: dt.datetime,
        gates: bool = True,
        expired: bool = True,
        pids: Sequence[tuple[int, int]] = (),
        ahead: int = 0,
    ) -> tuple[list[bool], Claimed]:
        """Record ``outcomes`` of ``worker``'s attempts, then claim up to ``limit`` ready tasks (and
        any ready gates) of ``sources``: one serialised transaction, so that a holder pays one
        round of the store per turn of its loop.

        Recording: each outcome is recorded only if ``worker`` still holds the task (True); one it
        lost to a takeover is ignored (False). A success releases its dependents; a final failure
        blocks its downstream; a skip for missing data skips it; each finished task counts for its
        gate. ``pids`` are the step PIDs of tasks it holds.

        Claiming: a run whose owner epoch changed or that is stopping is skipped (and reported
        ``lost`` to its owner); a pool or a processor's cap counts every running task with a
        current lease, whoever holds it. Up to ``ahead`` more tasks that are in no pool and under
        no cap may be claimed beyond ``limit`` (to start as threads free up). With ``expired``, a
        task whose holder's lease ran out is taken over (that attempt does not count against its
        retries).
        """

        gated: frozenset[str] | None = frozenset()
        for source in sources:
            gated = None if gated is None or source.gated is None else gated | source.gated
        if not sources:
            gated = None

        def exchange(db: Database) -> tuple[list[bool], Claimed]:
            with db.transaction(exclusive=True):
                held, ready_gate = _record(db, worker, outcomes, now, gated) if outcomes else ([], False)
                for task_id, pid in pids:
                    db.execute(
                        "UPDATE task SET pid = :pid WHERE id = :id AND claimed_by = :w AND status = 'running'",
                        {"id": task_id, "w": worker, "pid": pid},
                    )
                found = Claimed()
                judge = gates or ready_gate
                if not sources or (limit <= 0 and not judge):
                    return held, found
                if pools or caps:
                    db.advisory_lock(CLAIM_LOCK)  # the counts below must not change under us
                by_run = {source.run_id: source for source in sources}
                if limit > 0:
                    found.tasks = _claim_tasks(
                        db,
                        worker,
                        by_run,
                        limit,
                        pools,
                        caps,
                        now,
                        lease_until,
                        found.orphans,
                        expired,
                        ahead,
                    )
                if found.tasks and not judge:
                    return held, found  # the claim itself checked that each run is still ours
                live = _live_sources(db, sources, found.lost)
                if judge and live:
                    found.gates = _claim_gates(
                        db, worker, [source.run_id for source in live], now, lease_until
                    )
                return held, found

        result: tuple[list[bool], Claimed] = self._write(exchange)
        return result

    def beat(self, worker: str, now: dt.datetime, lease_until: dt.datetime, tasks_done: int = 0) -> set[int]:
        """A holder's heartbeat: extend its leases, note how many tasks it finished so far; return
        the ids of the tasks it still holds."""

        def beat(db: Database) -> set[int]:
            with db.transaction():
                db.execute(
                    "UPDATE worker SET heartbeat_at = :now, tasks_done = :done WHERE id = :id",
                    {"id": worker, "now": now, "done": tasks_done},
                )
                rows = db.rows(
                    "UPDATE task SET lease_until = :lease WHERE claimed_by = :w AND status = 'running' RETURNING id",
                    {"w": worker, "lease": lease_until},
                )
                db.execute(
                    "UPDATE gate SET lease_until = :lease WHERE claimed_by = :w AND status = 'running'",
                    {"w": worker, "lease": lease_until},
                )
                return {int(row[0]) for row in rows}

        result: set[int] = self._write(beat)
        return result

    def set_task_pid(self, task_id: int, worker: str, pid: int) -> None:
        self._write(
            lambda db: db.execute(
                "UPDATE task SET pid = :pid WHERE id = :id AND claimed_by = :w",
                {"id": task_id, "w": worker, "pid": pid},
            )
        )

    def set_task_job(self, task_id: int, worker: str, job_id: str) -> bool:
        """Store the warehouse job id of the attempt ``worker`` holds, before the job is submitted:
        whoever takes the task over re-attaches to it. False when the task is no longer held."""
        changed = self._write(
            lambda db: db.execute(
                "UPDATE task SET job_id = :job WHERE id = :id AND claimed_by = :w AND status = 'running'",
                {"id": task_id, "w": worker, "job": job_id},
            )
        )
        return bool(changed)

    # -- pools ------------------------------------------------------------------------------------

    def ensure_pools(self, pools: Mapping[str, int], now: dt.datetime) -> None:
        """Record the configured pools: a new one starts at its size; a changed size is taken and
        the effective size kept within it."""
        if not pools:
            return

        def ensure(db: Database) -> None:
            # It reads before it writes: SQLite's write lock is taken first, or a process that
            # read before another's commit would be refused its write at once ("database is locked").
            with db.transaction(exclusive=True):
                known = {str(r[0]): int(r[1]) for r in db.rows("SELECT name, size FROM pool", {})}
                for name, size in pools.items():
                    if name not in known:
                        db.execute(
                            "INSERT INTO pool (name, size, effective_size, updated_at) VALUES (:n, :s, :s, :now) "
                            "ON CONFLICT (name) DO NOTHING",  # another process started at the same time
                            {"n": name, "s": size, "now": now},
                        )
                    elif known[name] != size:
                        db.execute(
                            "UPDATE pool SET size = :s, effective_size = CASE WHEN effective_size > :s THEN :s "
                            "ELSE effective_size END, updated_at = :now WHERE name = :n",
                            {"n": name, "s": size, "now": now},
                        )

        self._write(ensure)

    def resize_pool(self, name: str, seen: int, size: int, now: dt.datetime) -> bool:
        """Set a pool's effective size to ``size`` if it is still ``seen`` (compare-and-set: of two
        processes throttled at once, one halves it)."""
        changed = self._write(
            lambda db: db.execute(
                "UPDATE pool SET effective_size = :size, updated_at = :now WHERE name = :n AND effective_size = :seen",
                {"n": name, "seen": seen, "size": size, "now": now},
            )
        )
        return bool(changed)

    # -- results ----------------------------------------------------------------------------------

    def finish_gate(
        self,
        worker: str,
        gate: Gate,
        failures: Sequence[str],
        now: dt.datetime,
        failed_dates: Mapping[str, str] | None = None,
    ) -> bool:
        """Record a gate's verdict (``failures`` empty: passed) and release or block what waits for it.

        For a per-date gate, ``failed_dates`` are the dates a blocking check failed on (with what
        failed): only the waiting tasks that cover one of them are blocked, the others go on."""
        general = list(failures)
        if failed_dates:
            failures = [*failures, *failed_dates.values()]

        def finish(db: Database) -> bool:
            with db.transaction(exclusive=True):
                status = "failed" if failures else "passed"
                changed = db.execute(
                    "UPDATE gate SET status = :status, message = :message, finished_at = :now, lease_until = NULL "
                    "WHERE id = :id AND claimed_by = :w AND status = 'running'",
                    {"id": gate.id, "w": worker, "status": status, "message": failures[0] if failures else None,
                     "now": now},
                )  # fmt: skip
                if changed != 1:
                    return False
                waiting = [
                    int(r[0])
                    for r in db.rows("SELECT task_id FROM gate_dep WHERE gate_id = :g", {"g": gate.id})
                ]
                if failed_dates and not general and gate.blocking:
                    hit, free = _split_by_dates(db, waiting, failed_dates)
                    _release(db, free)
                    for message, ids in hit.items():
                        _cascade(
                            db,
                            ids,
                            TaskStatus.BLOCKED,
                            f"blocked by gate: {message}",
                            now,
                            include_roots=True,
                        )
                elif not failures:
                    _release(db, waiting)
                elif gate.blocking:
                    _cascade(
                        db,
                        waiting,
                        TaskStatus.BLOCKED,
                        f"blocked by gate: {failures[0]}",
                        now,
                        include_roots=True,
                    )
                return True

        result: bool = self._write(finish)
        return result

    def succeeded_dates(self, run_id: int, processor: str, start: str, end: str) -> set[str]:
        """The dates in [start, end] that succeeded tasks of the processor built in the run."""
        found: set[str] = set()
        for first, last in self.db.rows(
            "SELECT date, end_date FROM task WHERE run_id = :run AND processor = :p AND status = 'succeeded' "
            "AND date <= :end AND end_date >= :start",
            {"run": run_id, "p": processor, "start": start, "end": end},
        ):
            day, stop = dt.date.fromisoformat(str(first)), dt.date.fromisoformat(str(last))
            while day <= stop:
                if start <= day.isoformat() <= end:
                    found.add(day.isoformat())
                day += dt.timedelta(days=1)
        return found


# -- the statements behind the methods --------------------------------------------------------------


def _live_sources(db: Database, sources: Sequence[Source], lost: list[int]) -> list[Source]:
    """The sources still open to claims: running, not stopping, and (for an owner) still at its
    epoch; an owner's run taken by another is added to ``lost``."""
    rows = {
        int(r[0]): r[1:]
        for r in db.rows(
            "SELECT id, status, epoch, stop_requested_at FROM run WHERE id IN :ids",
            {"ids": [source.run_id for source in sources]},
        )
    }
    live: list[Source] = []
    for source in sources:
        row = rows.get(source.run_id)
        if source.epoch is not None and (row is None or row[1] != source.epoch):
            lost.append(source.run_id)
        elif row is not None and row[0] == RunStatus.RUNNING and row[2] is None:
            live.append(source)
    return live


def _record(
    db: Database, worker: str, outcomes: Sequence[Outcome], now: dt.datetime, gated: frozenset[str] | None
) -> tuple[list[bool], bool]:
    """Record each outcome the worker still holds and settle the consequences: a few statements
    whatever the number of outcomes. Returns (held, whether a gate became ready)."""
    successes = [o for o in outcomes if o.status == TaskStatus.SUCCEEDED]
    settled = db.dialect == "postgresql"  # one statement also released dependents and task_latest
    if not successes:
        held_ids: set[int] = set()
    elif settled:
        held_ids = _record_successes_pg(db, worker, successes, now)
    else:
        held_ids = _record_successes(db, worker, successes, now)
    held = [
        o.task.id in held_ids if o.status == TaskStatus.SUCCEEDED else _record_one(db, worker, o, now)
        for o in outcomes
    ]
    finished = [o.task for ok, o in zip(held, outcomes, strict=True) if ok and o.status != TaskStatus.PENDING]
    succeeded = [] if settled else list(held_ids)
    for start in range(0, len(succeeded), 500):
        # A task may depend on several of the tasks that succeeded together: count each.
        db.execute(
            "UPDATE task SET waits = task.waits - d.n FROM (SELECT task_id, COUNT(*) AS n FROM task_dep "
            f"WHERE upstream_id IN :ids GROUP BY task_id) d WHERE task.id = d.task_id AND task.{PENDING_BY_ID}",
            {"ids": succeeded[start : start + 500]},
        )
    ready_gate = False
    if finished:
        if gated is None or any(task.processor in gated for task in finished):
            ready_gate = _gates_done(db, [(task.run_id, task.processor, task.date) for task in finished])
        ids = [task.id for task in finished if not (settled and task.id in held_ids)]
        for start in range(0, len(ids), 500):
            db.execute(latest.OF_TASKS, {"ids": ids[start : start + 500]})
    return held, ready_gate


def _add(column: str, value: str) -> str:
    """SQL adding an attempt's cost ``value`` (may be NULL: unknown) to what the task cost so far:
    the bill counts every attempt."""
    if value.startswith(":"):
        value = f"CAST({value} AS BIGINT)"
    return f"CASE WHEN {value} IS NULL THEN {column} ELSE COALESCE({column}, 0) + {value} END"


# PostgreSQL: record successes, release what waited for them and update task_latest in one
# statement (data-modifying WITH), its text the same whatever the number of successes (arrays),
# so that the server prepares it once. Every part reads the statement's snapshot: the dependents
# released are pending (never the running tasks recorded), task_latest takes what ``done`` returns.
_SUCCESSES_PG = (
    "WITH v AS (SELECT * FROM unnest(CAST(:ids AS integer[]), CAST(:seconds AS double precision[]), "
    "CAST(:codes AS integer[]), CAST(:rows AS integer[]), CAST(:starts AS timestamptz[]), "
    "CAST(:ends AS timestamptz[]), CAST(:bp AS bigint[]), CAST(:bb AS bigint[]), CAST(:sm AS bigint[])) "
    "AS v (id, seconds, exit_code, rows_affected, started_at, finished_at, bp, bb, sm)), "
    "done AS (UPDATE task SET status = 'succeeded', started_at = v.started_at, finished_at = v.finished_at, "
    "duration_seconds = v.seconds, exit_code = v.exit_code, error_tail = NULL, rows_affected = v.rows_affected, "
    "lease_until = NULL, not_before = NULL, "
    f"bytes_processed = {_add('task.bytes_processed', 'v.bp')}, bytes_billed = {_add('task.bytes_billed', 'v.bb')}, "
    f"slot_ms = {_add('task.slot_ms', 'v.sm')} FROM v WHERE task.id = v.id AND task.claimed_by = :w "
    f"AND task.{RUNNING_BY_ID} RETURNING {', '.join('task.' + c for c in latest.SOURCE_COLUMNS)}), "
    "released AS (UPDATE task SET waits = task.waits - d.n FROM (SELECT dep.task_id, COUNT(*) AS n "
    "FROM task_dep dep JOIN done ON done.id = dep.upstream_id GROUP BY dep.task_id) d "
    f"WHERE task.id = d.task_id AND task.{PENDING_BY_ID}), "
    f"newest AS ({latest.upsert_from('done')}) "
    "SELECT id FROM done"
)


def _record_successes_pg(
    db: Database, worker: str, outcomes: Sequence[Outcome], now: dt.datetime
) -> set[int]:
    """PostgreSQL: record successes and settle their consequences (see ``_SUCCESSES_PG``); return
    the ids of those the worker still held."""
    found = db.rows(
        _SUCCESSES_PG,
        {
            "w": worker,
            "ids": Array([o.task.id for o in outcomes]),
            "seconds": Array([o.seconds for o in outcomes]),
            "codes": Array([o.exit_code for o in outcomes]),
            "rows": Array([o.rows_affected for o in outcomes]),
            "starts": Array([o.started or now for o in outcomes]),
            "ends": Array([o.finished or now for o in outcomes]),
            "bp": Array([o.bytes_processed for o in outcomes]),
            "bb": Array([o.bytes_billed for o in outcomes]),
            "sm": Array([o.slot_ms for o in outcomes]),
        },
    )
    return {int(row[0]) for row in found}


def _record_successes(db: Database, worker: str, outcomes: Sequence[Outcome], now: dt.datetime) -> set[int]:
    """Record successes in one statement; return the ids of those the worker still held."""
    held: set[int] = set()
    for start in range(0, len(outcomes), 200):
        batch = outcomes[start : start + 200]
        stamp = "TIMESTAMP WITH TIME ZONE" if db.dialect == "postgresql" else "TEXT"
        rows = ", ".join(
            f"(CAST(:id_{n} AS INTEGER), CAST(:s_{n} AS FLOAT), CAST(:e_{n} AS INTEGER), CAST(:r_{n} AS INTEGER), "
            f"CAST(:b_{n} AS {stamp}), CAST(:f_{n} AS {stamp}), CAST(:bp_{n} AS BIGINT), CAST(:bb_{n} AS BIGINT), "
            f"CAST(:sm_{n} AS BIGINT))"
            for n in range(len(batch))
        )
        params: dict[str, Any] = {"w": worker}
        for n, outcome in enumerate(batch):
            params.update({f"id_{n}": outcome.task.id, f"s_{n}": outcome.seconds, f"e_{n}": outcome.exit_code,
                           f"r_{n}": outcome.rows_affected, f"b_{n}": outcome.started or now,
                           f"f_{n}": outcome.finished or now, f"bp_{n}": outcome.bytes_processed,
                           f"bb_{n}": outcome.bytes_billed, f"sm_{n}": outcome.slot_ms})  # fmt: skip
        found = db.rows(
            f"WITH v (id, seconds, exit_code, rows_affected, started_at, finished_at, bp, bb, sm) AS (VALUES {rows}) "
            "UPDATE task SET status = 'succeeded', started_at = v.started_at, finished_at = v.finished_at, "
            "duration_seconds = v.seconds, exit_code = v.exit_code, error_tail = NULL, "
            "rows_affected = v.rows_affected, lease_until = NULL, not_before = NULL, "
            f"bytes_processed = {_add('task.bytes_processed', 'v.bp')}, bytes_billed = {_add('task.bytes_billed', 'v.bb')}, "
            f"slot_ms = {_add('task.slot_ms', 'v.sm')} "
            f"FROM v WHERE task.id = v.id AND task.claimed_by = :w AND task.{RUNNING_BY_ID} RETURNING task.id",
            params,
        )
        held.update(int(row[0]) for row in found)
    return held


def _claim_tasks(
    db: Database,
    worker: str,
    sources: Mapping[int, Source],
    limit: int,
    pools: Mapping[str, int],
    caps: Mapping[str, int],
    now: dt.datetime,
    lease_until: dt.datetime,
    orphans: list[Orphan],
    expired_too: bool = True,
    ahead: int = 0,
) -> list[Task]:
    runs = list(sources)
    in_pool: Counter[str] = Counter()
    if pools:
        # Throttling shrinks a pool: its effective size, shared by every process, is the limit.
        effective = {str(r[0]): int(r[1]) for r in db.rows("SELECT name, effective_size FROM pool", {})}
        pools = {name: min(size, effective.get(name, size)) for name, size in pools.items()}
        for pool, count in db.rows(
            "SELECT pool, COUNT(*) FROM task WHERE status = 'running' AND lease_until > :now AND pool IS NOT NULL "
            "GROUP BY pool",
            {"now": now},
        ):
            in_pool[str(pool)] = int(count)
    per_processor: Counter[tuple[int, str]] = Counter()
    if caps:
        for run_id, processor, count in db.rows(
            "SELECT run_id, processor, COUNT(*) FROM task WHERE run_id IN :runs AND status = 'running' "
            "AND lease_until > :now GROUP BY run_id, processor",
            {"runs": runs, "now": now},
        ):
            per_processor[(int(run_id), str(processor))] = int(count)
    # Candidates are locked (PostgreSQL) as they are read: read more than will be claimed only
    # when a pool, a cap or a processor filter may pass some over.
    filtered = bool(pools or caps) or any(source.processors is not None for source in sources.values())
    scan = max((limit + ahead) * 8, 64) if filtered else limit + ahead
    # Two claimants skip each other's rows (SKIP LOCKED) instead of waiting; with pools or caps
    # they take turns on the claim lock. The join with the run is the fencing: a run that is no
    # longer running, is stopping, or (for its owner) was taken over gives nothing.
    lock = " FOR UPDATE OF t SKIP LOCKED" if db.dialect == "postgresql" else ""
    fence, params = _fence(sources)
    params.update(runs=runs, now=now, scan=scan)
    candidates = db.rows(
        "SELECT t.id, t.run_id, t.processor, t.pool FROM task t JOIN run r ON r.id = t.run_id "
        "WHERE t.run_id IN :runs AND t.status = 'pending' AND t.waits = 0 "
        f"AND (t.not_before IS NULL OR t.not_before <= :now){fence} ORDER BY t.seq LIMIT :scan{lock}",
        params,
    )
    expired = (
        db.rows(
            "SELECT t.id, t.run_id, t.processor, t.pool, t.pid, t.claimed_by FROM task t JOIN run r ON r.id = t.run_id "
            f"WHERE t.status = 'running' AND t.lease_until < :now AND t.run_id IN :runs{fence} ORDER BY t.seq "
            f"LIMIT :scan{lock}",
            params,
        )
        if expired_too
        else []
    )
    candidates += [row[:4] for row in expired]
    previous = {int(row[0]): (row[4], row[5]) for row in expired}
    chosen: list[int] = []
    for task_id, run_id, processor, pool in candidates:
        if len(chosen) >= limit + ahead:
            break
        allowed = sources[int(run_id)].processors
        if allowed is not None and processor not in allowed:
            continue
        cap = caps.get(processor)
        if len(chosen) >= limit and (pool is not None or cap is not None):
            continue  # only free tasks are claimed ahead: a pool or a cap counts what is held
        if pool is not None and in_pool[pool] >= pools.get(pool, 1 << 30):
            continue
        if cap is not None and per_processor[(int(run_id), processor)] >= cap:
            continue
        chosen.append(int(task_id))
        if pool is not None:
            in_pool[pool] += 1
        per_processor[(int(run_id), processor)] += 1
    if not chosen:
        return []
    from runbook.state.task_queries import TASK_COLUMNS

    # The rows are picked by id: the status tests are expressions (``PENDING_BY_ID``), else
    # SQLite reads the OR through ix_task_status_lease, every pending task of the store (80 ms
    # per claim at 1,000,000 tasks), instead of looking up the ids.
    rows = db.rows(
        "UPDATE task SET max_attempts = max_attempts + CASE WHEN status = 'running' THEN 1 ELSE 0 END, "
        "status = 'running', claimed_by = :w, lease_until = :lease, attempt = attempt + 1, started_at = :now, "
        "finished_at = NULL, pid = NULL, not_before = NULL "
        f"WHERE id IN :ids AND (({PENDING_BY_ID} AND waits = 0) OR ({RUNNING_BY_ID} AND lease_until < :now)) "
        f"RETURNING {TASK_COLUMNS}",
        {"ids": chosen, "w": worker, "lease": lease_until, "now": now},
    )
    tasks = from_rows(Task, rows)
    orphans += [
        Orphan(task.run_id, task.id, int(pid) if pid else None, str(holder))
        for task in tasks
        if task.id in previous
        for pid, holder in [previous[task.id]]
    ]
    order = {task_id: position for position, task_id in enumerate(chosen)}
    return sorted(tasks, key=lambda task: order[task.id])


def _fence(sources: Mapping[int, Source]) -> tuple[str, dict[str, Any]]:
    """SQL (on ``run r``) that keeps the runs open to this claimant, and its parameters."""
    params: dict[str, Any] = {}
    parts = []
    free = [run_id for run_id, source in sources.items() if source.epoch is None]
    if free:
        parts.append("t.run_id IN :free")
        params["free"] = free
    for n, (run_id, source) in enumerate(sorted((k, v) for k, v in sources.items() if v.epoch is not None)):
        parts.append(f"(t.run_id = :owned_{n} AND r.epoch = :epoch_{n})")
        params.update({f"owned_{n}": run_id, f"epoch_{n}": source.epoch})
    return f" AND r.status = 'running' AND r.stop_requested_at IS NULL AND ({' OR '.join(parts)})", params


def _claim_gates(
    db: Database, worker: str, runs: list[int], now: dt.datetime, lease_until: dt.datetime
) -> list[Gate]:
    rows = db.rows(
        f"UPDATE gate SET status = 'running', claimed_by = :w, lease_until = :lease WHERE id IN ("
        "SELECT id FROM gate WHERE run_id IN :runs AND ((status = 'pending' AND waits = 0) "
        "OR (status = 'running' AND lease_until < :now))) "
        f"RETURNING {GATE_COLUMNS}",
        {"runs": runs, "w": worker, "lease": lease_until, "now": now},
    )
    return from_rows(Gate, rows)


def _record_one(db: Database, worker: str, outcome: Outcome, now: dt.datetime) -> bool:
    task = outcome.task
    values: dict[str, Any] = {
        "id": task.id, "w": worker, "now": outcome.finished or now, "exit_code": outcome.exit_code,
        "seconds": outcome.seconds, "error": outcome.error[-ERROR_TAIL_CHARS:] if outcome.error else None,
        "rows": outcome.rows_affected, "started": outcome.started or now,
        "bp": outcome.bytes_processed, "bb": outcome.bytes_billed, "sm": outcome.slot_ms,
    }  # fmt: skip
    if outcome.status == TaskStatus.PENDING:
        # A retry waits until retry_at and runs as a new job; an attempt handed back (a stop) does
        # not count, and keeps its job for the next holder to re-attach to.
        values.update(retry_at=outcome.retry_at, back=1 if outcome.returned else 0)
        job = "job_id" if outcome.returned else "NULL"
        changed = db.execute(
            "UPDATE task SET status = 'pending', started_at = :started, finished_at = :now, duration_seconds = :seconds, "
            "exit_code = :exit_code, error_tail = COALESCE(:error, error_tail), lease_until = NULL, claimed_by = NULL, "
            f"not_before = :retry_at, max_attempts = max_attempts + :back, pid = NULL, job_id = {job}, "
            f"bytes_processed = {_add('bytes_processed', ':bp')}, bytes_billed = {_add('bytes_billed', ':bb')}, "
            f"slot_ms = {_add('slot_ms', ':sm')} "
            "WHERE id = :id AND claimed_by = :w AND status = 'running'",
            values,
        )
        return changed == 1
    values.update(status=outcome.status, skip=outcome.skip_reason)
    changed = db.execute(
        "UPDATE task SET status = :status, started_at = :started, finished_at = :now, duration_seconds = :seconds, "
        "exit_code = :exit_code, "
        "error_tail = :error, rows_affected = :rows, lease_until = NULL, not_before = NULL, "
        f"bytes_processed = {_add('bytes_processed', ':bp')}, bytes_billed = {_add('bytes_billed', ':bb')}, "
        f"slot_ms = {_add('slot_ms', ':sm')}, skip_reason = COALESCE(:skip, skip_reason) WHERE id = :id AND claimed_by = :w AND status = 'running'",
        values,
    )
    if changed != 1:
        return False
    span = task.date if task.date == task.end_date else f"{task.date}..{task.end_date}"
    if outcome.status == TaskStatus.FAILED:
        _cascade(db, [task.id], TaskStatus.BLOCKED, f"upstream {task.processor} {span} failed", now)
    elif outcome.status == TaskStatus.SKIPPED:
        _cascade(db, [task.id], TaskStatus.SKIPPED, f"upstream {task.processor} {span} skipped", now,
                 skip_reason=SkipReason.UPSTREAM_MISSING)  # fmt: skip
    return True


__all__ = [
    "Claimed",
    "Outcome",
    "Source",
    "WorkQueue",
]
