"""Validation on demand (``runbook validate``) and the history of check results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from runbook.app.base import Base
from runbook.errors import ConfigError
from runbook.snapshots.checks import check_history, check_snapshot
from runbook.snapshots.model import CheckSnapshot


@dataclass(frozen=True)
class Validation:
    """What ``runbook validate`` found: each check's result, and the blocking failures."""

    start: dt.date
    end: dt.date
    results: list[CheckSnapshot]
    blocking_failures: list[str]
    config_error: ConfigError | None

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)


class Checks(Base):
    """The check use cases (mixed into :class:`runbook.app.App`)."""

    def validate(self, processors: list[str], start: dt.date | None, end: dt.date | None) -> Validation:
        """Run the checks of ``processors`` (all by default) over the range now, and store the results."""
        from runbook.checks.runner import CheckRunner
        from runbook.engine.planner import resolve_range

        first, last = resolve_range(self.config, processors, start, end)
        checker = CheckRunner(self.workspace, self.store, self.warehouse, self.calendar)
        outcomes = checker.validate(processors, first, last)
        descriptions = {
            (n, c.name): c.description for n, p in self.config.processors.items() for c in p.checks
        }
        return Validation(
            start=first,
            end=last,
            results=[
                check_snapshot(outcome.result, descriptions, self.config.warehouse.kind)
                for outcome in outcomes
            ],
            blocking_failures=[outcome.summary() for outcome in outcomes if outcome.blocking_failure],
            config_error=next((o.config_error for o in outcomes if o.config_error), None),
        )

    def check_history(
        self, check: str | None, processor: str | None, limit: int | None
    ) -> list[dict[str, Any]]:
        """Each check's results over time (oldest first) with its metrics as series."""
        q = self.reader()
        if q is None:
            return []
        return check_history(
            q.check_results(processor=processor, check_name=check),
            limit=limit,
            dialect=self.config.warehouse.kind,
        )
