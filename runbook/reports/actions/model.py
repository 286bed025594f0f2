"""The next-action engine's vocabulary: what it reads and what it answers.

:class:`Facts` is what the engine reads; :class:`Action` is one thing to do, with the kind of
thing it ``does`` (:data:`WORK`, :data:`OBSERVE` or :data:`NOTE`); :class:`Situation` is a row of
the table of :mod:`runbook.reports.actions.situations`. A situation added by another part of
runbook needs its facts added to :class:`Facts` with an empty default (see the ``HOOK`` fields for
a quota pause; per-date check failures came in that way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from runbook.snapshots.model import CheckSnapshot, FailureGroup, NoteSnapshot, RunSnapshot
from runbook.snapshots.processors import ProcessorState

WORK, OBSERVE, NOTE = "work", "observe", "note"


class Action(NamedTuple):
    """One thing to do: ``command`` (None when there is nothing to type) runs as is from the
    workspace and returns. ``situation`` names the row of :data:`SITUATIONS` it comes from;
    ``does`` is ``work`` (completes work), ``observe`` (looks or verifies) or ``note``."""

    kind: str
    text: str
    command: str | None
    does: str
    situation: str
    run_id: int | None = None


class ExtentFact(NamedTuple):
    """Source data of a processor outside the range its newest run was asked for."""

    processor: str
    run_id: int
    start: str
    end: str
    message: str


@dataclass
class Facts:
    """What the engine reads: the read model's snapshots plus, per run, the dates it has left."""

    processors: list[ProcessorState]
    running: list[RunSnapshot]
    interrupted: list[RunSnapshot]
    # Failed or blocked runs holding the newest attempt of some expected date (``resume`` reopens them).
    resumable: list[RunSnapshot]
    # run id -> processor -> dates of its tasks not done (pending, running, failed, blocked, cancelled).
    open_dates: dict[int, dict[str, set[str]]]
    checks: list[CheckSnapshot]
    failures: list[FailureGroup]
    # (processor, error line) -> the error line of every failed attempt of the group's dates.
    attempt_errors: dict[tuple[str, str], list[list[str]]]
    gaps: dict[str, set[str]]  # expected dates never built, per processor
    stale: dict[str, set[str]]  # built with another code version than the current one
    expected: dict[str, list[str]]
    notes: dict[str, list[NoteSnapshot]]
    host: str = ""  # this machine, as the state store names it
    extent: list[ExtentFact] = field(default_factory=list)
    # HOOK (quota pause): runs paused by the warehouse's quota, with the time they may go on:
    # [(run, "2026-01-07T18:00:00Z")] -> `runbook resume N` after that time.
    paused: list[tuple[RunSnapshot, str]] = field(default_factory=list)
    # Per-date checks: dates whose newest per-date verdict failed, per processor and check:
    # {(processor, check): {dates}} -> rebuild those dates (and their downstream).
    failed_check_dates: dict[tuple[str, str], set[str]] = field(default_factory=dict)


class Situation(NamedTuple):
    name: str
    detect: Callable[[Facts], list[Action]]


__all__ = [
    "NOTE",
    "OBSERVE",
    "WORK",
    "Action",
    "ExtentFact",
    "Facts",
    "Situation",
]
