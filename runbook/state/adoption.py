"""Adopted runs in the state store: what the log of a process started outside runbook says.

An adopted run has one task per date of its processor, like any run. Its watcher does not claim
them: it records how far the process's log has got. A date the log has moved past is built
(``succeeded``), the date it is at is ``running``, the later ones wait. When the process ends,
the date it reached is built too and the dates it never reached are settled (``failed``, or back
to ``pending`` for ``runbook resume`` to build them with the processor's own step). Every write is
conditional on holding the run (its owner and epoch), like a controller's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from runbook.state import latest
from runbook.state.connect import Database, Json
from runbook.state.graph import _recompute_waits
from runbook.state.ownership import LostRun

_OPEN = "run_id = :run AND status IN ('pending', 'running')"


class Adoptions:
    """Mixed into :class:`runbook.state.store.Store` (which provides ``db`` and ``_write``)."""

    db: Database

    def _write(self, action: Callable[[Database], Any]) -> Any:
        raise NotImplementedError

    def record_reached(
        self,
        run_id: int,
        holder: str,
        epoch: int,
        reached: str | None,
        *,
        since: dt.datetime,
        now: dt.datetime,
        settle: str | None = None,
        note: str | None = None,
    ) -> None:
        """The log of the adopted process has reached date ``reached`` (None: no date yet).

        Dates before it are built (a date whose step started at ``since`` if it had not started
        yet), the one at it runs. With ``settle`` the process has ended: the date it reached is
        built as well, and every date still open becomes ``settle`` (``failed`` with ``note`` as
        its error, or ``pending`` for a resume). Raises :class:`LostRun` when ``holder`` no longer
        holds the run at ``epoch``.
        """

        def write(db: Database) -> None:
            with db.transaction(exclusive=True):
                held = db.execute(
                    "UPDATE run SET heartbeat_at = :now WHERE id = :run AND epoch = :epoch AND controller_id = :holder",
                    {"run": run_id, "epoch": epoch, "holder": holder, "now": now},
                )
                if held != 1:
                    raise LostRun(run_id)
                values = {"run": run_id, "holder": holder, "now": now, "since": since, "reached": reached}
                if reached is not None:
                    last = ">=" if settle else ">"
                    db.execute(
                        "UPDATE task SET status = 'succeeded', started_at = COALESCE(started_at, :since), "
                        "finished_at = :now, claimed_by = :holder, lease_until = NULL, error_tail = NULL, "
                        "attempt = CASE WHEN attempt = 0 THEN 1 ELSE attempt END "
                        f"WHERE {_OPEN} AND :reached {last} end_date",
                        values,
                    )
                    db.execute(
                        "UPDATE task SET status = 'running', started_at = :now, claimed_by = :holder, attempt = 1 "
                        "WHERE run_id = :run AND status = 'pending' AND date <= :reached AND end_date >= :reached",
                        values,
                    )
                if settle == "failed":
                    db.execute(
                        "UPDATE task SET status = 'failed', finished_at = :now, lease_until = NULL, "
                        f"error_tail = :note WHERE {_OPEN}",
                        {**values, "note": note},
                    )
                elif settle == "pending":
                    db.execute(
                        "UPDATE task SET status = 'pending', claimed_by = NULL, lease_until = NULL, started_at = NULL "
                        f"WHERE {_OPEN}",
                        values,
                    )
                db.execute(latest.OF_RUN, {"run": run_id})
                _recompute_waits(db, run_id)
                db.execute(
                    "UPDATE worker SET heartbeat_at = :now, tasks_done = (SELECT COUNT(*) FROM task "
                    "WHERE run_id = :run AND claimed_by = :holder AND status = 'succeeded') WHERE id = :holder",
                    values,
                )
                if reached is not None:
                    _remember_reached(db, run_id, reached)

        self._write(write)


def _remember_reached(db: Database, run_id: int, reached: str) -> None:
    """Keep the date the log reached in the run's options, where status and the handoff read it."""
    stored = db.scalar("SELECT options FROM run WHERE id = :run", {"run": run_id})
    options = (json.loads(stored) if isinstance(stored, str | bytes) else stored) or {}
    adopted = dict(options.get("adopted") or {})
    if adopted.get("reached") == reached:
        return
    adopted["reached"] = reached
    db.execute(
        "UPDATE run SET options = :options WHERE id = :run",
        {"run": run_id, "options": Json({**options, "adopted": adopted})},
    )
