"""A run's admission and ownership in the state store: starting, taking, stopping and ending it.

- Of two overlapping runs started together exactly one is admitted (one transaction, one lock).
- A run's owner holds it by **epoch** (a fencing token): taking a run adds one to it, and every
  later write of the owner (its claims, the run's status) is conditional on it. Taking a run hands
  back the tasks its previous owner held (that attempt does not count).
- A stop is requested in the store, so that every process of the run sees it at its next
  heartbeat, on any machine; the owner ends the run once nothing is left to do, or can be done.
- The processes that take part (controllers and workers) register here, with what became of them.

Every method is one transaction: whatever happens to the process afterwards, the store is
consistent, and ``runbook resume`` continues from it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from runbook.kinds import RunStatus, SkipReason, TaskStatus
from runbook.state import latest
from runbook.state.connect import Database, Json
from runbook.state.graph import _cascade, _recompute_waits
from runbook.state.queries import Queries
from runbook.state.records import Run
from runbook.state.task_queries import built_since

ADMISSION_LOCK = 0x72756E62_0003  # PostgreSQL advisory lock keys: "runb" + a number


class RunOwnership:
    """Mixed into :class:`runbook.state.store.Store` (which provides ``db``, ``_write`` and
    ``transaction``)."""

    db: Database

    def _write(self, action: Callable[[Database], Any]) -> Any:
        raise NotImplementedError

    # -- admission and ownership ------------------------------------------------------------------

    def admit_run(self, refuse: Callable[[list[Run]], None], **fields: Any) -> Run:
        """Create a run unless ``refuse`` (shown the active runs) raises: the check and the insert
        are one transaction under one lock, so of two overlapping runs started together exactly
        one is created."""

        def admit(db: Database) -> Run:
            with db.transaction(exclusive=True):
                db.advisory_lock(ADMISSION_LOCK)
                refuse(Queries(db).list_runs(statuses=(RunStatus.QUEUED, RunStatus.RUNNING), limit=None))
                run: Run = self.create_run(db=db, **fields)  # type: ignore[attr-defined]
                return run

        result: Run = self._write(admit)
        return result

    def take_run(
        self,
        run_id: int,
        *,
        seen_epoch: int,
        owner: str,
        pid: int,
        host: str,
        log_path: str,
        now: dt.datetime,
        reopen: bool = False,
        versions: Mapping[str, str] | None = None,
    ) -> int | None:
        """Become the owner of run ``run_id`` if its epoch is still ``seen_epoch`` (compare-and-set);
        return the new epoch, or None when someone else took it first.

        The caller has judged that the run has no live owner. In the same transaction the tasks
        its previous owner held are handed back (that attempt does not count), with ``reopen``
        its failed, blocked and cancelled tasks get fresh retries (``runbook resume``), and the
        run's waits are recomputed: only the process that won the run changes anything.
        """

        def take(db: Database) -> int | None:
            with db.transaction(exclusive=True):
                previous = db.rows(
                    "SELECT controller_id FROM run WHERE id = :id AND epoch = :seen",
                    {"id": run_id, "seen": seen_epoch},
                )
                changed = db.execute(
                    "UPDATE run SET status = 'running', controller_id = :owner, epoch = epoch + 1, pid = :pid, "
                    "host = :host, log_path = :log, heartbeat_at = :now, started_at = COALESCE(started_at, :now), "
                    "finished_at = NULL, error = NULL, stop_requested_at = NULL, resume_after = NULL "
                    "WHERE id = :id AND epoch = :seen",
                    {"id": run_id, "seen": seen_epoch, "owner": owner, "pid": pid, "host": host, "log": log_path,
                     "now": now},
                )  # fmt: skip
                if changed != 1:
                    return None
                if previous and previous[0][0]:
                    _hand_back(db, run_id, str(previous[0][0]))
                if versions is not None:
                    db.execute(
                        "UPDATE run SET versions = :v WHERE id = :id",
                        {"id": run_id, "v": Json(dict(versions))},
                    )
                if reopen:
                    _reopen(db, run_id)
                _recompute_waits(db, run_id)
                return seen_epoch + 1

        result: int | None = self._write(take)
        return result

    def owner_beat(
        self, run_id: int, owner: str, epoch: int, now: dt.datetime
    ) -> tuple[bool, dt.datetime | None]:
        """The owner's heartbeat: (still the owner, when a stop was requested if it was)."""
        rows = self._write(
            lambda db: db.rows(
                "UPDATE run SET heartbeat_at = :now WHERE id = :id AND epoch = :epoch AND controller_id = :owner "
                "RETURNING stop_requested_at",
                {"id": run_id, "epoch": epoch, "owner": owner, "now": now},
            )
        )
        if not rows:
            return False, None
        from runbook.formatting import as_utc

        return True, as_utc(rows[0][0])

    def request_stop(self, run_id: int, now: dt.datetime) -> bool:
        """Ask a run's processes to stop (they see it at their next heartbeat, on any machine)."""
        return bool(
            self._write(
                lambda db: db.execute(
                    "UPDATE run SET stop_requested_at = :now WHERE id = :id AND status IN ('queued', 'running')",
                    {"id": run_id, "now": now},
                )
            )
        )

    def quota_exhausted(self, run_id: int, reason: str, resets_at: dt.datetime, now: dt.datetime) -> bool:
        """A daily warehouse quota is used up: ask the run to stop (its owner interrupts it with
        ``reason``) and note when it may resume. One conditional write, by any process of the run."""
        changed = self._write(
            lambda db: db.execute(
                "UPDATE run SET stop_requested_at = COALESCE(stop_requested_at, :now), error = :reason, "
                "resume_after = :at WHERE id = :id AND status IN ('queued', 'running')",
                {"id": run_id, "now": now, "reason": reason, "at": resets_at},
            )
        )
        return bool(changed)

    def finalize(self, run_id: int, owner: str, epoch: int, now: dt.datetime) -> str | None:
        """End the run if nothing is pending or running (one conditional write); return its final
        status, or None when work is left. Raises :class:`LostRun` when this owner lost the run."""
        sql = (
            "UPDATE run SET finished_at = :now, heartbeat_at = :now, status = CASE "
            "WHEN EXISTS (SELECT 1 FROM task WHERE run_id = :id AND status = 'failed') THEN 'failed' "
            "WHEN EXISTS (SELECT 1 FROM gate WHERE run_id = :id AND status = 'failed' AND blocking) THEN 'blocked' "
            "ELSE 'succeeded' END "
            "WHERE id = :id AND epoch = :epoch AND controller_id = :owner "
            "AND NOT EXISTS (SELECT 1 FROM task WHERE run_id = :id AND status IN ('pending', 'running')) "
            "AND NOT EXISTS (SELECT 1 FROM gate WHERE run_id = :id AND status IN ('pending', 'running')) "
            "RETURNING status"
        )

        def end(db: Database) -> str | None:
            with db.transaction(exclusive=True):
                rows = db.rows(sql, {"id": run_id, "epoch": epoch, "owner": owner, "now": now})
                if rows:
                    return str(rows[0][0])
                still = db.scalar(
                    "SELECT 1 FROM run WHERE id = :id AND epoch = :epoch AND controller_id = :owner",
                    {"id": run_id, "epoch": epoch, "owner": owner},
                )
                if not still:
                    raise LostRun(run_id)
                return None

        result: str | None = self._write(end)
        return result

    def interrupt(self, run_id: int, owner: str, epoch: int, reason: str, now: dt.datetime) -> int:
        """Mark the run interrupted and hand back the tasks this owner still holds; return how many."""

        def stop(db: Database) -> int:
            with db.transaction(exclusive=True):
                returned = _hand_back(db, run_id, owner)
                changed = db.execute(
                    "UPDATE run SET status = 'interrupted', error = :reason, finished_at = :now, controller_id = NULL "
                    "WHERE id = :id AND epoch = :epoch AND controller_id = :owner",
                    {"id": run_id, "epoch": epoch, "owner": owner, "reason": reason, "now": now},
                )
                if changed != 1:
                    raise LostRun(run_id)
                return returned

        result: int = self._write(stop)
        return result

    def stalled(self, run_id: int, now: dt.datetime) -> bool:
        """Whether pending work of the run can never start: nothing running or ready, no retry due
        later. Repairs what it can (waits recomputed) before saying so."""

        def check(db: Database) -> bool:
            with db.transaction(exclusive=True):
                busy = db.scalar(
                    "SELECT COUNT(*) FROM task WHERE run_id = :r AND (status = 'running' OR "
                    "(status = 'pending' AND waits = 0)) ",
                    {"r": run_id},
                ) or db.scalar(
                    "SELECT COUNT(*) FROM gate WHERE run_id = :r AND (status = 'running' OR "
                    "(status = 'pending' AND waits = 0))",
                    {"r": run_id},
                )
                if busy:
                    return False
                _recompute_waits(db, run_id)
                ready = db.scalar(
                    "SELECT COUNT(*) FROM task WHERE run_id = :r AND status = 'pending' AND waits = 0",
                    {"r": run_id},
                ) or db.scalar(
                    "SELECT COUNT(*) FROM gate WHERE run_id = :r AND status = 'pending' AND waits = 0",
                    {"r": run_id},
                )
                if ready:
                    return False
                stuck = [
                    int(r[0])
                    for r in db.rows(
                        "SELECT id FROM task WHERE run_id = :r AND status = 'pending'", {"r": run_id}
                    )
                ]
                if not stuck:
                    return False
                _cascade(
                    db,
                    stuck,
                    TaskStatus.BLOCKED,
                    "its dependencies can never be met",
                    now,
                    include_roots=True,
                )
                db.execute(
                    "UPDATE gate SET status = 'failed', message = 'its tasks never finished', finished_at = :now "
                    "WHERE run_id = :r AND status = 'pending'",
                    {"r": run_id, "now": now},
                )
                return True

        result: bool = self._write(check)
        return result

    # -- workers ----------------------------------------------------------------------------------

    def register_worker(
        self, worker: str, *, host: str, pid: int, kind: str, run_id: int | None, now: dt.datetime
    ) -> None:
        def register(db: Database) -> None:
            with db.transaction():
                db.execute("DELETE FROM worker WHERE id = :id", {"id": worker})
                db.execute(
                    "INSERT INTO worker (id, host, pid, kind, run_id, started_at, heartbeat_at, tasks_done) "
                    "VALUES (:id, :host, :pid, :kind, :run, :now, :now, 0)",
                    {"id": worker, "host": host, "pid": pid, "kind": kind, "run": run_id, "now": now},
                )

        self._write(register)

    def worker_stopped(self, worker: str, now: dt.datetime, note: str | None = None) -> None:
        self._write(
            lambda db: db.execute(
                "UPDATE worker SET stopped_at = :now, note = CASE WHEN note IS NULL THEN CAST(:note AS VARCHAR) "
                "WHEN CAST(:note AS VARCHAR) IS NULL THEN note ELSE note || '; ' || CAST(:note AS VARCHAR) END "
                "WHERE id = :id",
                {"id": worker, "now": now, "note": note},
            )
        )

    def worker_note(self, worker: str, note: str) -> None:
        self._write(
            lambda db: db.execute(
                "UPDATE worker SET note = :note WHERE id = :id", {"id": worker, "note": note}
            )
        )


class LostRun(Exception):  # noqa: N818 - a condition, handled by the controller
    """This controller no longer owns the run: another took it (its epoch changed)."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} was taken over by another controller")
        self.run_id = run_id


# -- the statements behind the methods --------------------------------------------------------------


def _built_since(db: Database, run_id: int, now: dt.datetime) -> int:
    """Failed, blocked and cancelled tasks whose dates another run has built since, at the code
    version this run records, are skipped as ``already_done`` instead of reopened: resume never
    builds a date again that is built (``runbook run --force`` does, when that is wanted)."""
    recorded = db.scalar("SELECT versions FROM run WHERE id = :id", {"id": run_id})
    versions = json.loads(recorded) if isinstance(recorded, str) else dict(recorded or {})
    by_run: dict[int, list[int]] = {}
    for task_id, built_run in built_since(db, run_id, versions).values():
        by_run.setdefault(built_run, []).append(task_id)
    for built_run, ids in sorted(by_run.items()):
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            db.execute(
                "UPDATE task SET status = 'skipped', skip_reason = :reason, error_tail = :why, finished_at = :now, "
                "lease_until = NULL, claimed_by = NULL, not_before = NULL WHERE id IN :ids",
                {"ids": chunk, "reason": SkipReason.ALREADY_DONE, "why": f"built by run {built_run} since",
                 "now": now},
            )  # fmt: skip
            db.execute(latest.OF_TASKS, {"ids": chunk})
    return sum(len(ids) for ids in by_run.values())


def _reopen(db: Database, run_id: int) -> int:
    """Failed, blocked and cancelled tasks back to pending with fresh retries (but for the dates
    another run built since, see :func:`_built_since`); the gates of the processors that have work
    again are judged again once it is done."""
    _built_since(db, run_id, dt.datetime.now(dt.UTC))
    count = db.execute(
        "UPDATE task SET status = 'pending', max_attempts = attempt + max_attempts, not_before = NULL, "
        "lease_until = NULL, claimed_by = NULL, job_id = NULL WHERE run_id = :run AND status IN :statuses",
        {"run": run_id, "statuses": [TaskStatus.FAILED, TaskStatus.BLOCKED, TaskStatus.CANCELLED]},
    )
    db.execute(
        "UPDATE gate SET status = 'pending', claimed_by = NULL, lease_until = NULL, message = NULL, finished_at = NULL "
        "WHERE run_id = :run AND (status = 'failed' OR processor IN "
        "(SELECT DISTINCT processor FROM task WHERE run_id = :run AND status IN ('pending', 'running')))",
        {"run": run_id},
    )
    return count


def _hand_back(db: Database, run_id: int, holder: str) -> int:
    """Return the tasks ``holder`` holds in the run to pending; that attempt does not count."""
    db.execute(
        "UPDATE gate SET status = 'pending', claimed_by = NULL, lease_until = NULL "
        "WHERE run_id = :run AND claimed_by = :h AND status = 'running'",
        {"run": run_id, "h": holder},
    )
    return db.execute(
        "UPDATE task SET status = 'pending', claimed_by = NULL, lease_until = NULL, not_before = NULL, pid = NULL, "
        "max_attempts = max_attempts + 1 WHERE run_id = :run AND claimed_by = :h AND status = 'running'",
        {"run": run_id, "h": holder},
    )


__all__ = [
    "LostRun",
    "RunOwnership",
]
