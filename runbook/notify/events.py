"""Which events no controller is alive to send: interrupted runs and stalled ones.

A controller announces how its run ended (finished, failed, blocked, or interrupted by a stop or a
signal). A controller killed with ``kill -9``, a machine that rebooted, or a run that hangs cannot:
the long-lived processes (``runbook worker``, ``runbook serve``) and live controllers look for
these with :func:`due_events`, and the outbox's unique key makes sure each is sent once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runbook.engine.liveness import effective_status, liveness
from runbook.formatting import iso_utc
from runbook.kinds import NotifyEvent, RunOrigin, RunStatus
from runbook.state.queries import Queries
from runbook.state.records import Run

# Interruptions older than this when a watcher first sees them are history, not news.
LOOKBACK_SECONDS = 24 * 3600.0
ANNOUNCE_GRACE_SECONDS = 30.0  # what a controller that recorded an interruption has to announce it


class StallTarget(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def on(self) -> frozenset[str]: ...
    @property
    def stalled_after(self) -> float: ...


@dataclass(frozen=True)
class Due:
    """An event to send for a run: ``occurrence`` tells apart repeats within one epoch (a second
    stall after progress resumed); ``targets`` limits it to some targets (None: every one that
    listens to the event)."""

    event: str
    run: Run
    occurrence: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] | None = None


def due_events(
    q: Queries,
    runs: Sequence[Run],
    targets: Sequence[StallTarget],
    now: dt.datetime,
    *,
    alive: Callable[[Run], bool | None] = liveness,
    lookback_seconds: float = LOOKBACK_SECONDS,
) -> list[Due]:
    """Interrupted runs (stopped, or whose controller is gone) and runs with no task started or
    finished for a target's ``stalled_after``, among ``runs``."""
    wants_interrupted = any(NotifyEvent.INTERRUPTED in t.on for t in targets)
    stall_targets = [t for t in targets if NotifyEvent.STALLED in t.on]
    activity = q.last_activity([run.id for run in runs]) if stall_targets else {}
    found: list[Due] = []
    for run in runs:
        is_alive = alive(run)
        status = effective_status(run, is_alive)
        if status == RunStatus.INTERRUPTED and wants_interrupted:
            recorded = run.status == RunStatus.INTERRUPTED  # by its controller, which announces it
            when = (run.finished_at if recorded else None) or run.heartbeat_at
            age = (now - when).total_seconds() if when is not None else None
            # A watcher speaks for a controller that recorded the interruption only when that
            # controller has had time to say it itself (it claims the event right after).
            grace = ANNOUNCE_GRACE_SECONDS if recorded else 0.0
            if age is not None and grace <= age <= lookback_seconds:
                found.append(Due(NotifyEvent.INTERRUPTED, run, details={"reason": _why(run)}))
        elif status == RunStatus.RUNNING and is_alive and stall_targets:
            moments = [m for m in (activity.get(run.id), run.started_at) if m is not None]
            if not moments:
                continue
            last = max(moments)
            idle = (now - last).total_seconds()
            late = tuple(t.name for t in stall_targets if idle >= t.stalled_after)
            if late:
                details = {"idle_seconds": round(idle, 1), "last_activity_at": iso_utc(last)}
                found.append(Due(NotifyEvent.STALLED, run, iso_utc(last) or "", details, late))
    return found


def _why(run: Run) -> str:
    if run.status == RunStatus.INTERRUPTED and run.error:
        return run.error
    if run.origin == RunOrigin.ADOPTED:
        return f"the adopted process (PID {run.pid} on {run.host}) is gone and nothing recorded its end"
    return f"its controller (PID {run.pid} on {run.host}) is gone"
