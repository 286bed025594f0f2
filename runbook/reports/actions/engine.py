"""The next-action engine's entry points: :func:`decide` runs every row of
:data:`~runbook.reports.actions.situations.SITUATIONS` and orders the actions (work first, then
observation, then notes); :func:`next_actions` gives them as JSON-ready data for the handoff.
"""

from __future__ import annotations

from typing import Any

from runbook.reports.actions.model import NOTE, OBSERVE, WORK, Action, Facts
from runbook.reports.actions.situations import SITUATIONS

_DOES_ORDER = {WORK: 0, OBSERVE: 1, NOTE: 2}


def decide(facts: Facts) -> list[Action]:
    """Every situation's actions: work first, then observation, then notes."""
    found = [action for situation in SITUATIONS for action in situation.detect(facts)]
    ordered = sorted(enumerate(found), key=lambda pair: (_DOES_ORDER[pair[1].does], pair[0]))
    actions = [action for _, action in ordered]
    if any(a.does == WORK for a in actions) and not facts.running:
        actions.append(
            Action(
                "watch",
                "After starting work: see it go (returns at once); `runbook handoff --format brief` tells what is left",
                "runbook status --json",
                OBSERVE,
                "started",
            )
        )
        actions.sort(key=lambda a: _DOES_ORDER[a.does])
    return actions


def next_actions(facts: Facts) -> list[dict[str, Any]]:
    """The actions as JSON-ready data (``next_actions`` of the handoff)."""
    return [action._asdict() for action in decide(facts)]


__all__ = [
    "decide",
    "next_actions",
]
