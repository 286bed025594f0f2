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
from runbook.snapshots.model import CheckSnapshot, PoolSnapshot, RunDetail, RunSnapshot
from runbook.snapshots.runs import run_detail, run_snapshots, status_runs

if TYPE_CHECKING:
    from runbook.snapshots.heatmap import DayDetail, HeatMap
    from runbook.snapshots.model import CoverageSnapshot
    from runbook.snapshots.processors import CalendarFor

HEATMAP_DEFAULT_DAYS = 731  # without --start, a heat map shows the last two years of the range
LOG_EXCERPT_LINES = 40


class Inspect(Base):
    """The reading use cases (mixed into :class:`runbook.app.App`)."""

    def status(self, *, recent: int = 5) -> list[RunSnapshot]:
        """Live runs (running, queued, interrupted), then the ``recent`` latest finished ones."""
        q = self.reader()
        if q is None:
            return []
        with q.db.snapshot():
            return run_snapshots(q, status_runs(q, recent=recent))

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
        return run_snapshots(q, runs, costs=True)

    def pools(self) -> list[PoolSnapshot]:
        """The configured pools with the slots they have now (shrunk while the warehouse throttles)."""
        q = self.reader()
        stored = q.pool_sizes() if q is not None else {}
        return [
            PoolSnapshot(name, size, stored[name][1] if name in stored and stored[name][0] == size else size)
            for name, size in sorted(self.config.pools.items())
        ]

    def run_detail(self, run_id: int, *, with_tasks: bool = False) -> RunDetail:
        """One run with its failures grouped by error, blocked dates, checks and events."""
        q = self.reader()
        if q is None:
            self.get_run(run_id)  # one line: not found
        assert q is not None
        with q.db.snapshot():
            return run_detail(q, self.get_run(run_id), with_tasks=with_tasks, checks=self.run_checks)

    def run_checks(self, run_id: int) -> list[CheckSnapshot]:
        from runbook.snapshots.checks import check_snapshot, merge_per_date

        q = self.reader()
        return (
            [
                check_snapshot(r, self.check_descriptions(), self.config.warehouse.kind)
                for r in merge_per_date(q.check_results(run_id=run_id))
            ]
            if q
            else []
        )

    def check_descriptions(self) -> dict[tuple[str, str], str]:
        return {
            (name, c.name): c.description
            for name, proc in self.config.processors.items()
            for c in proc.checks
        }

    def coverage(
        self,
        processor: str,
        start: dt.date | None,
        end: dt.date | None,
        *,
        calendar_for: CalendarFor | None = None,
        versions: dict[str, str] | None = None,
    ) -> CoverageSnapshot:
        """Which dates of ``processor`` are built, by which run and version; gaps and stale ranges."""
        from runbook.engine.versions import resolve_versions
        from runbook.snapshots.coverage import coverage_range, coverage_snapshot, processor_coverage

        if processor not in self.config.processors:
            raise UsageError(f"unknown processor {processor!r} (known: {', '.join(self.config.processors)})")
        q = self.reader()
        start, end = coverage_range(self.config, q, start, end)
        if versions is None or processor not in versions:
            versions = resolve_versions(self.config, [processor], str(self.workspace.root))
        version = versions[processor]
        calendar = (calendar_for or self.calendar)(start, end)
        found = processor_coverage(q, self.config, calendar, processor, start, end, version)
        checks = q.check_results_overlapping(processor, start.isoformat(), end.isoformat()) if q else []
        return coverage_snapshot(found, checks)

    def heatmap_range(self, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
        """The range a heat map shows: as given, else the workspace's (the calendar's, else the
        span of all runs), its last two years when no start is given."""
        from runbook.snapshots.coverage import coverage_range
        from runbook.snapshots.heatmap import MAX_DAYS

        first, last = coverage_range(self.config, self.reader(), start, end)
        if start is None and (last - first).days >= HEATMAP_DEFAULT_DAYS:
            first = last - dt.timedelta(days=HEATMAP_DEFAULT_DAYS - 1)
        if (last - first).days >= MAX_DAYS:
            raise UsageError(f"{first}..{last} is more than {MAX_DAYS} days: choose a shorter range")
        return first, last

    def heatmap(
        self,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        calendar_for: CalendarFor | None = None,
        versions: dict[str, str] | None = None,
    ) -> HeatMap:
        """Every processor by date over the range: built, stale, failed, blocked, skipped and why,
        never built, running or queued. ``calendar_for`` and ``versions`` default to the
        workspace's calendar (with its query) and the current code versions."""
        from runbook.snapshots.heatmap import heat_map, live_states
        from runbook.snapshots.processors import workspace_coverages

        first, last = self.heatmap_range(start, end)
        q = self.reader()
        warnings, coverages = workspace_coverages(
            self.workspace, q, (first, last), calendar_for=calendar_for or self.calendar, versions=versions
        )
        live = q.live_task_dates(self.live_run_ids(), first.isoformat(), last.isoformat()) if q else []
        return heat_map(
            self.config, coverages, first, last, live=live_states(live, first, last), warnings=warnings
        )

    def live_run_ids(self) -> list[int]:
        """The runs a live controller is executing (or will: queued)."""
        from runbook.engine.liveness import effective_status, liveness
        from runbook.snapshots.runs import live_runs

        q = self.reader()
        runs = live_runs(q) if q is not None else []
        return [run.id for run in runs if effective_status(run, liveness(run)) in ACTIVE_RUN_STATUSES]

    def heatmap_cell(
        self,
        processor: str,
        day: dt.date,
        *,
        calendar_for: CalendarFor | None = None,
        versions: dict[str, str] | None = None,
    ) -> DayDetail:
        """One cell of the heat map: ``processor`` on ``day``, its attempts in every run (newest
        first), the newest error, the checks that cover it and its lines of the newest log."""
        from runbook.runlog import task_lines
        from runbook.snapshots.heatmap import ATTEMPTS_SHOWN, LogExcerpt, day_detail, live_states
        from runbook.snapshots.processors import workspace_coverages

        if processor not in self.config.processors:
            raise UsageError(f"unknown processor {processor!r} (known: {', '.join(self.config.processors)})")
        q = self.reader()
        iso = day.isoformat()
        if versions is None:
            from runbook.engine.versions import resolve_versions

            versions = resolve_versions(self.config, [processor], str(self.workspace.root))
        _, coverages = workspace_coverages(
            self.workspace, q, (day, day), calendar_for=calendar_for or self.calendar, versions=versions
        )
        lookback = max(proc.batch_days for proc in self.config.processors.values()) - 1
        tasks, total = (
            q.tasks_covering(processor, iso, lookback_days=lookback, limit=ATTEMPTS_SHOWN) if q else ([], 0)
        )
        checks = q.check_results_overlapping(processor, iso, iso) if q else []
        live = live_states(q.live_task_dates(self.live_run_ids(), iso, iso), day, day) if q else {}
        log = None
        stepped = next((task for task in tasks if task.started_at is not None), None)
        run = q.get_run(stepped.run_id) if q is not None and stepped is not None else None
        if stepped is not None and run is not None and run.log_path:
            lines, omitted = task_lines(
                self.workspace.resolve(run.log_path),
                processor,
                stepped.date,
                stepped.end_date,
                limit=LOG_EXCERPT_LINES,
            )
            log = LogExcerpt(run_id=run.id, path=run.log_path, lines=lines, omitted=omitted)
        return day_detail(
            coverages[processor], iso, tasks, total, checks, live=live.get((processor, iso)), log=log
        )

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
