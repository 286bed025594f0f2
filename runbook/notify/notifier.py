"""The notifier: claims events in the outbox and delivers them in the background, with retries.

Nothing here may hold up a run. :meth:`Notifier.emit` only queues the event: a dispatcher thread
builds the document (the run's snapshot, summary and next action), claims one outbox row per
target (one conditional insert: of all processes that notice an event, one sends it) and hands
each row to a delivery thread that POSTs it, retrying with backoff. A delivery that fails for good
is recorded (the row ``failed``, a ``notify_failed`` event on the run). A process that ends waits
at most :meth:`flush`'s bound for its deliveries and leaves the rest to the next watcher.

Webhook URLs come from the environment; they are resolved here and never leave this object: the
store, the events and every message name a target ``notify.N`` and mask the URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbook.clock import utcnow
from runbook.config import RetryPolicy
from runbook.engine.liveness import this_host
from runbook.errors import ConfigError, RunbookError
from runbook.formatting import iso_utc
from runbook.kinds import NotifyEvent
from runbook.notify import payload
from runbook.notify.deliver import DeliveryError, post
from runbook.notify.events import LOOKBACK_SECONDS, Due, due_events
from runbook.redact import Redactor, redact_tree
from runbook.state.records import Notification

if TYPE_CHECKING:
    from runbook.state.store import Store
    from runbook.workspace import Workspace

LEASE_SECONDS = 120.0  # a delivery is held this long without news before a watcher may take it
FLUSH_SECONDS = 5.0  # the longest a finishing controller waits for its deliveries


@dataclass(frozen=True)
class Target:
    """A ``notify:`` entry with its URL resolved (a secret: never stored, logged or shown)."""

    name: str  # notify.N
    url: str
    on: frozenset[str]
    format: str
    stalled_after: float
    retries: RetryPolicy
    timeout: float


def resolve_targets(workspace: Workspace) -> list[Target]:
    """The workspace's ``notify:`` targets; a URL whose variable is unset is one ConfigError line."""
    found = []
    for index, entry in enumerate(workspace.config.notify):
        where = f"notify.{index}.url"
        url = workspace.expand_env(entry.url, where)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{entry.url} does not expand to an http:// or https:// URL",
                file=str(workspace.config_path),
                path=where,
            )
        found.append(
            Target(f"notify.{index}", url, frozenset(entry.on), entry.format, entry.stalled_after,
                   entry.retries, entry.timeout)
        )  # fmt: skip
    return found


class Notifier:
    """Sends the events of runs to the workspace's ``notify:`` targets (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        targets: Sequence[Target],
        *,
        workspace: str,
        redact: Redactor,
        say: Callable[[str], None] | None = None,
        transport: Any = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.targets = list(targets)
        self.workspace = workspace
        self.redact = redact
        self.say = say or (lambda line: None)
        self.transport = transport
        self.lease_seconds = lease_seconds
        self.holder = f"{this_host()[:40]}:{os.getpid()}:n{uuid.uuid4().hex[:6]}"
        self._jobs: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._busy = 0
        self._idle = threading.Condition()
        self._dispatcher: threading.Thread | None = None
        self._released = threading.Event()

    def listens(self, event: str) -> bool:
        return any(event in target.on for target in self.targets)

    # -- what callers use ---------------------------------------------------------------------------

    def emit(
        self,
        event: str,
        run_id: int,
        *,
        epoch: int | None = None,
        occurrence: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Send ``event`` of run ``run_id`` to every target that listens to it, in the background.

        ``epoch`` (default: the run's) and ``occurrence`` make the event's identity: the same
        event of the same run at the same epoch and occurrence is sent once, whoever emits it.
        """
        if self.listens(event):
            self._submit(
                lambda: self.emit_now(event, run_id, epoch=epoch, occurrence=occurrence, details=details)
            )

    def watch(self, run_ids: Sequence[int]) -> None:
        """Look for stalls of these runs (a controller's own run), in the background."""
        if self.listens(NotifyEvent.STALLED) and run_ids:
            self._submit(
                lambda: self._send_due([r for r in map(self.store.get_run, run_ids) if r is not None])
            )

    def scan(self, *, lookback_seconds: float = LOOKBACK_SECONDS) -> int:
        """Take over deliveries nobody holds, and send the events no controller is alive to send
        (interrupted and stalled runs); return how many deliveries this process now holds."""
        from runbook.snapshots.runs import live_runs

        now = utcnow()
        held = self.store.reclaim_notifications(
            self.holder, now, now + dt.timedelta(seconds=self.lease_seconds)
        )
        for row in held:
            self._start_delivery(row)
        count = len(held)
        if self.listens(NotifyEvent.INTERRUPTED) or self.listens(NotifyEvent.STALLED):
            count += self._send_due(live_runs(self.store), lookback_seconds=lookback_seconds)
        return count

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait up to ``timeout`` seconds for queued events and deliveries; hand what is left over
        to the next watcher. True when everything was done."""
        with self._idle:
            done = self._idle.wait_for(lambda: self._busy == 0, timeout=max(timeout, 0.0))
        if not done:
            self._released.set()
            with contextlib.suppress(RunbookError):
                self.store.release_notifications(self.holder, utcnow())
        return done

    def close(self, timeout: float = FLUSH_SECONDS) -> bool:
        done = self.flush(timeout)
        if self._dispatcher is not None:
            self._jobs.put(None)
        return done

    # -- claiming -----------------------------------------------------------------------------------

    def emit_now(
        self,
        event: str,
        run_id: int,
        *,
        epoch: int | None = None,
        occurrence: str = "",
        details: dict[str, Any] | None = None,
        only: Sequence[str] | None = None,
    ) -> list[int]:
        """Claim ``event`` for each listening target (``only`` these) and start delivering; return
        the ids of the outbox rows this process won."""
        from runbook.snapshots.runs import run_snapshots

        targets = [t for t in self.targets if event in t.on and (only is None or t.name in only)]
        run = self.store.get_run(run_id)
        if not targets or run is None:
            return []
        now = utcnow()
        (snapshot,) = run_snapshots(self.store, [run], now=now)
        sender = {"host": this_host(), "pid": os.getpid()}
        doc = payload.document(event, snapshot, workspace=self.workspace, at=iso_utc(now), sender=sender,
                               details=details)  # fmt: skip
        doc = redact_tree(doc, self.redact)
        won = []
        for target in targets:
            key = f"run:{run_id}:{event}:e{run.epoch if epoch is None else epoch}"
            key += (f":{occurrence}" if occurrence else "") + f":{target.name}"
            body = {**doc, "key": key, "target": target.name}
            lease = now + dt.timedelta(seconds=self.lease_seconds)
            row_id = self.store.claim_notification(
                key=key[:255], run_id=run_id, event=event, target=target.name, payload=body, holder=self.holder,
                now=now, lease_until=lease,
            )  # fmt: skip
            if row_id is not None:
                won.append(row_id)
                self._start_delivery(Notification(row_id, key, run_id, event, target.name, payload=body))
        return won

    def _send_due(self, runs: Sequence[Any], *, lookback_seconds: float = LOOKBACK_SECONDS) -> int:
        due: list[Due] = due_events(
            self.store, runs, self.targets, utcnow(), lookback_seconds=lookback_seconds
        )
        return sum(
            len(self.emit_now(d.event, d.run.id, epoch=d.run.epoch, occurrence=d.occurrence, details=d.details,
                              only=d.targets))
            for d in due
        )  # fmt: skip

    # -- delivering ---------------------------------------------------------------------------------

    def _start_delivery(self, row: Notification) -> None:
        target = next((t for t in self.targets if t.name == row.target), None)
        if target is None:
            self._give_up(row, 0, f"{row.target} is not in this runbook.yaml", "")
            return
        self._enter()
        threading.Thread(
            target=self._deliver, args=(row, target), daemon=True, name=f"notify-{row.id}"
        ).start()

    def _deliver(self, row: Notification, target: Target) -> None:
        try:
            body = payload.body(target.format, row.payload)
            error = ""
            tries = target.retries.tries
            for attempt in range(1, tries + 1):
                lease = utcnow() + dt.timedelta(seconds=self.lease_seconds)
                if self._released.is_set() or not self.store.notification_attempt(row.id, self.holder, lease):
                    return  # handed over, or taken by another watcher
                try:
                    post(target.url, body, timeout=target.timeout, transport=self.transport)
                except DeliveryError as exc:
                    error = self.redact(str(exc).replace(target.url, "***"))
                else:
                    self.store.notification_done(row.id, self.holder, sent=True, error=None, now=utcnow())
                    return
                if attempt < tries:
                    time.sleep(target.retries.wait_before(attempt))
            self._give_up(row, tries, error, target.format)
        except Exception as exc:  # noqa: BLE001 - a notification must never take a process down
            self.say(f"notify: {row.event} of run {row.run_id} to {row.target}: {self.redact(str(exc))}")
        finally:
            self._leave()

    def _give_up(self, row: Notification, tries: int, error: str, fmt: str) -> None:
        self.store.notification_done(row.id, self.holder, sent=False, error=error, now=utcnow())
        what = f"{row.event} notification to {row.target}" + (f" ({fmt})" if fmt else "")
        message = f"{what} failed" + (f" after {tries} attempt(s)" if tries else "") + f": {error}"
        self.store.add_event("notify_failed", message, run_id=row.run_id,
                             data={"event": row.event, "target": row.target, "attempts": tries})  # fmt: skip
        self.say(f"notify: {message}")

    # -- the background -----------------------------------------------------------------------------

    def _submit(self, job: Callable[[], object]) -> None:
        self._enter()
        self._jobs.put(job)
        if self._dispatcher is None or not self._dispatcher.is_alive():
            self._dispatcher = threading.Thread(target=self._dispatch, daemon=True, name="notify")
            self._dispatcher.start()

    def _dispatch(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - the store may be down: the run goes on
                self.say(f"notify: {self.redact(str(exc))}")
            finally:
                self._leave()

    def _enter(self) -> None:
        with self._idle:
            self._busy += 1

    def _leave(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()
