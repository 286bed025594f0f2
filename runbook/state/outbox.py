"""The notification outbox in the state store: who sends which event, and how it went.

Every event of a run that a ``notify:`` target hears about becomes one row per target. Inserting
that row is the claim, one conditional write: its ``key`` (run, event, occurrence, target) is
unique, so when a controller, an adopted run's watcher, ``runbook worker`` and ``runbook serve``
all notice the same event, exactly one of them gets the row and sends it. The holder keeps it by
lease while it delivers (with retries); a holder that died, or a controller that could not wait
for a slow webhook, leaves it ``pending`` for any watcher to take once the lease is over.

The URL is never stored: ``target`` names the runbook.yaml entry (``notify.0``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from runbook.state.connect import Database, Json
from runbook.state.records import Notification, columns, from_rows

NOTIFICATION_COLUMNS = ", ".join(columns(Notification))
ERROR_CHARS = 2000


class Outbox:
    """Mixed into :class:`runbook.state.store.Store` (which provides ``db`` and ``_write``)."""

    db: Database

    def _write(self, action: Callable[[Database], Any]) -> Any:
        raise NotImplementedError

    def claim_notification(
        self,
        *,
        key: str,
        run_id: int | None,
        event: str,
        target: str,
        payload: dict[str, Any],
        holder: str,
        now: dt.datetime,
        lease_until: dt.datetime,
    ) -> int | None:
        """Record an event for a target and hold it for ``holder``; None when someone already has it."""
        rows = self._write(
            lambda db: db.rows(
                "INSERT INTO notification (key, run_id, event, target, status, attempts, claimed_by, lease_until, "
                "payload, created_at) VALUES (:key, :run, :event, :target, 'pending', 0, :holder, :lease, :payload, "
                ":now) ON CONFLICT (key) DO NOTHING RETURNING id",
                {
                    "key": key,
                    "run": run_id,
                    "event": event,
                    "target": target,
                    "holder": holder,
                    "lease": lease_until,
                    "payload": Json(payload),
                    "now": now,
                },
            )  # fmt: skip
        )
        return int(rows[0][0]) if rows else None

    def reclaim_notifications(
        self, holder: str, now: dt.datetime, lease_until: dt.datetime, *, limit: int = 20
    ) -> list[Notification]:
        """Take over pending deliveries nobody holds any more (their lease is over)."""
        free = "status = 'pending' AND (lease_until IS NULL OR lease_until < :now)"
        rows = self._write(
            lambda db: db.rows(
                f"UPDATE notification SET claimed_by = :holder, lease_until = :lease WHERE {free} AND id IN "
                f"(SELECT id FROM notification WHERE {free} ORDER BY id LIMIT {int(limit)}) "
                f"RETURNING {NOTIFICATION_COLUMNS}",
                {"holder": holder, "lease": lease_until, "now": now},
            )
        )
        return from_rows(Notification, rows)

    def notification_attempt(self, notification_id: int, holder: str, lease_until: dt.datetime) -> bool:
        """One more delivery attempt by ``holder`` (its lease extended); False when it lost the row."""
        changed = self._write(
            lambda db: db.execute(
                "UPDATE notification SET attempts = attempts + 1, lease_until = :lease "
                "WHERE id = :id AND claimed_by = :holder AND status = 'pending'",
                {"id": notification_id, "holder": holder, "lease": lease_until},
            )
        )
        return bool(changed)

    def notification_done(
        self, notification_id: int, holder: str, *, sent: bool, error: str | None, now: dt.datetime
    ) -> bool:
        """The delivery ended: ``sent``, or failed for good with ``error`` (secrets already masked)."""
        changed = self._write(
            lambda db: db.execute(
                "UPDATE notification SET status = :status, error = :error, sent_at = :sent, lease_until = NULL "
                "WHERE id = :id AND claimed_by = :holder AND status = 'pending'",
                {
                    "id": notification_id,
                    "holder": holder,
                    "status": "sent" if sent else "failed",
                    "error": error[:ERROR_CHARS] if error else None,
                    "sent": now if sent else None,
                },
            )  # fmt: skip
        )
        return bool(changed)

    def release_notifications(self, holder: str, now: dt.datetime) -> int:
        """Hand the deliveries ``holder`` could not finish to whichever watcher comes next."""
        changed: int = self._write(
            lambda db: db.execute(
                "UPDATE notification SET lease_until = :now WHERE claimed_by = :holder AND status = 'pending'",
                {"holder": holder, "now": now},
            )
        )
        return changed

    def notifications(self, run_id: int | None = None) -> list[Notification]:
        """Every delivery (of one run), oldest first."""
        where, params = ("WHERE run_id = :run", {"run": run_id}) if run_id is not None else ("", {})
        return from_rows(
            Notification,
            self.db.rows(f"SELECT {NOTIFICATION_COLUMNS} FROM notification {where} ORDER BY id", params),
        )
