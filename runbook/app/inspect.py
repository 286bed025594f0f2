"""The reading use cases: status, history, one run, coverage, logs. They never write."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from runbook.app.base import Base
from runbook.engine.liveness import controller_alive
from runbook.errors import UsageError
from runbook.kinds import ACTIVE_RUN_STATUSES
from runbook.runlog import read_log
from runbook.snapshots.model import CheckSnapshot, RunDetail, RunSnapshot
from runbook.snapshots.runs import run_detail, run_snapshots, status_runs

if TYPE_CHECKING:
    from runbook.snapshots.coverage import CoverageSnapshot


class Inspect(Base):
    """The reading use cases (mixed into :class:`runbook.app.App`)."""

    def status(self, *, recent: int = 5) -> list[RunSnapshot]:
        """Live runs (running, queued, interrupted), then the ``recent`` latest finished ones."""
        q = self.reader()
        return run_snapshots(q, status_runs(q, recent=recent)) if q is not None else []

    def history(
        self,
        *,
        processor: str | None = None,
        status: str | None = None,
        since: dt.datetime | None = None,
        overlapping: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[RunSnapshot]:
        """Past runs, newest first, filtered."""
        q = self.reader()
        if q is None:
            return []
        runs = q.list_runs(
            statuses=[status] if status else None,
            processor=processor,
            since=since,
            overlapping=overlapping,
            limit=limit,
        )
        return run_snapshots(q, runs)

    def run_detail(self, run_id: int, *, with_tasks: bool = False) -> RunDetail:
        """One run with its failures grouped by error, blocked dates, checks and events."""
        run = self.get_run(run_id)
        q = self.reader()
        assert q is not None
        return run_detail(q, run, with_tasks=with_tasks, checks=self.run_checks)

    def run_checks(self, run_id: int) -> list[CheckSnapshot]:
        from runbook.snapshots.checks import check_snapshot

        q = self.reader()
        return (
            [check_snapshot(r, self.check_descriptions()) for r in q.check_results(run_id=run_id)]
            if q
            else []
        )

    def check_descriptions(self) -> dict[tuple[str, str], str]:
        return {
            (name, c.name): c.description
            for name, proc in self.config.processors.items()
            for c in proc.checks
        }

    def coverage(self, processor: str, start: dt.date | None, end: dt.date | None) -> CoverageSnapshot:
        """Which dates of ``processor`` are built, by which run and version; gaps and stale ranges."""
        from runbook.engine.versions import resolve_versions
        from runbook.snapshots.coverage import coverage_range, coverage_snapshot, processor_coverage

        if processor not in self.config.processors:
            raise UsageError(f"unknown processor {processor!r} (known: {', '.join(self.config.processors)})")
        q = self.reader()
        start, end = coverage_range(self.config, q, start, end)
        version = resolve_versions(self.config, [processor], str(self.workspace.root))[processor]
        calendar = self.calendar(start, end)
        if q is None:
            from runbook.snapshots.coverage import ProcessorCoverage

            bootstrap = self.config.bootstrap_days(processor)
            dates = [(d.isoformat(), why) for d, why in calendar.dates(start, end, bootstrap)]
            found, checks = ProcessorCoverage(processor, start, end, version, dates, {}), []
        else:
            found = processor_coverage(q, self.config, calendar, processor, start, end, version)
            checks = q.check_results_overlapping(processor, start.isoformat(), end.isoformat())
        return coverage_snapshot(found, checks)

    def log_lines(self, run_id: int, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The run's log, optionally followed while the run is active."""
        run = self.get_run(run_id)
        if not run.log_path:
            raise UsageError(f"run {run_id} has no log yet")

        def active() -> bool:
            q = self.reader()
            current = q.get_run(run_id) if q is not None else None
            return current is not None and current.status in ACTIVE_RUN_STATUSES and controller_alive(current)

        return read_log(self.workspace.resolve(run.log_path), tail=tail, follow=active if follow else None)
