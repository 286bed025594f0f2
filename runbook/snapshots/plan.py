"""A plan as data: ``runbook plan`` and ``runbook run --dry-run``."""

from typing import NamedTuple

from runbook.engine.planner import Plan


class PlannedDate(NamedTuple):
    processor: str
    date: str
    end_date: str
    action: str  # run or skip
    reason: str | None


class PlanSnapshot(NamedTuple):
    processors: list[str]
    start: str
    end: str
    versions: dict[str, str]
    counts: dict[str, dict[str, int]]
    dates: list[PlannedDate] | None
    warnings: list[str]


def plan_snapshot(plan: Plan, warnings: list[str], *, with_dates: bool = True) -> PlanSnapshot:
    return PlanSnapshot(
        processors=plan.processors,
        start=plan.start.isoformat(),
        end=plan.end.isoformat(),
        versions=plan.versions,
        counts=plan.counts(),
        dates=[
            PlannedDate(
                processor=task.processor,
                date=task.date.isoformat(),
                end_date=task.end_date.isoformat(),
                action="run" if task.runnable else "skip",
                reason=task.skip_reason,
            )
            for task in sorted(plan.tasks, key=lambda t: t.seq)
        ]
        if with_dates
        else None,
        warnings=warnings,
    )
