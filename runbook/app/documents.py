"""The JSON documents of the CLI's ``--json`` (docs/json.md), built in one place.

``runbook status --json`` prints :meth:`Documents.status_document`, ``runbook mcp``'s tool
``status`` returns the same document, and so on for every command both serve: the CLI only
prints what is built here, the MCP server only pages and returns it. The functions below the
class turn what a writing use case returned (a run started, runs resumed, a validation, a note, a
session) into its document.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from runbook.app.adopt import Adopt
from runbook.app.checks import Checks, Validation
from runbook.app.demo import Demo
from runbook.app.workers import Workers
from runbook.clock import utcnow
from runbook.kinds import RunOrigin, RunStatus
from runbook.snapshots import document

if TYPE_CHECKING:
    from runbook.app.adopt import Adopted
    from runbook.app.resume import Resumed, ResumePreview
    from runbook.app.runs import Planned
    from runbook.app.sessions import Report
    from runbook.engine.worker import WorkerReport
    from runbook.state.records import Note, Run, WorkSession

Document = dict[str, Any]
LOG_CHARS = 20_000  # what one read of a log returns at most (the MCP tool get_logs)


class Documents(Demo, Workers, Adopt, Checks):
    """The documents of the reading commands (mixed into :class:`runbook.app.App`)."""

    def status_document(self, *, recent: int = 5) -> Document:
        """``runbook status --json``: live runs, then the ``recent`` latest finished ones."""
        return document(generated_at=utcnow(), runs=self.status(recent=recent), pools=self.pools())

    def history_document(
        self,
        *,
        processor: str | None = None,
        status: str | None = None,
        since: dt.datetime | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        limit: int = 50,
        offset: int | None = None,
    ) -> Document:
        """``runbook history --json``: past runs, newest first, filtered (``since`` in UTC, ``start``
        and ``end``: runs whose dates reach into that range).

        With ``offset``, the runs ``offset`` to ``offset + limit`` of all that match, and their
        count as ``total`` (a page of them, for the MCP server; offset 0 is the same document)."""
        overlapping = None
        if start or end:
            overlapping = ((start or dt.date.min).isoformat(), (end or dt.date.max).isoformat())
        since = since_utc(since)
        filters = {"processor": processor, "status": status, "since": since, "dates": overlapping}
        if offset is None:
            runs = self.history(
                processor=processor, status=status, since=since, overlapping=overlapping, limit=limit
            )
            return document(filters=filters, runs=runs)
        from runbook.snapshots.runs import run_snapshots

        q = self.reader()
        if q is None:
            return document(filters=filters, runs=[], total=0)
        found = q.list_runs(statuses=[status] if status else None, processor=processor, since=since,
                            overlapping=overlapping, limit=None)  # fmt: skip
        return document(
            filters=filters, runs=run_snapshots(q, found[offset : offset + limit]), total=len(found)
        )

    def show_document(self, run_id: int, *, with_tasks: bool = False) -> Document:
        """``runbook show RUN_ID --json``: the run, failures, blocked dates, checks, events (tasks)."""
        from runbook.snapshots import to_data

        return document(**to_data(self.run_detail(run_id, with_tasks=with_tasks)))

    def coverage_document(self, processor: str, start: dt.date | None, end: dt.date | None) -> Document:
        """``runbook coverage PROCESSOR --json``."""
        from runbook.snapshots import to_data

        return document(**to_data(self.coverage(processor, start, end)))

    def run_document(self, run_id: int) -> Document:
        """One run as the **run** object of docs/json.md: ``{"schema_version", "run"}``."""
        from runbook.snapshots.runs import run_snapshots

        run = self.get_run(run_id)
        q = self.reader()
        assert q is not None
        (snapshot,) = run_snapshots(q, [run])
        return document(run=snapshot)

    def log_document(self, run_id: int, *, offset: int = 0, max_chars: int = LOG_CHARS) -> Document:
        """At most ``max_chars`` characters of the run's log from byte ``offset`` (from its end when
        negative), with ``next_offset`` to continue (``runbook logs RUN_ID``, a page at a time)."""
        from runbook.errors import UsageError
        from runbook.runlog import read_chunk

        run = self.get_run(run_id)
        if not run.log_path:
            raise UsageError(f"run {run_id} has no log yet")
        chunk = read_chunk(self.workspace.resolve(run.log_path), offset, max_chars)
        return document(run_id=run_id, log_path=run.log_path, **chunk)

    def check_history_document(self, check: str | None, processor: str | None, limit: int) -> Document:
        """``runbook checks history --json``: each check's results over time, oldest first."""
        found = self.check_history(check, processor, limit)
        return document(filters={"check": check, "processor": processor, "limit": limit}, checks=found)


def since_utc(since: dt.datetime | None) -> dt.datetime | None:
    """A ``--since`` without a time zone is UTC."""
    return since.replace(tzinfo=dt.UTC) if since is not None and since.tzinfo is None else since


def plan_document(planned: Planned) -> Document:
    """``runbook plan --json`` and ``runbook run --dry-run --json``."""
    from runbook.snapshots import to_data
    from runbook.snapshots.plan import plan_snapshot

    return document(**to_data(plan_snapshot(planned.plan, [w.message for w in planned.warnings])))


def started_document(run: Run, pid: int) -> Document:
    """``runbook run --detach --json``: the run recorded and the PID of its detached controller."""
    return document(run_id=run.id, pid=pid, log_path=run.log_path)


def resumed_document(resumed: Resumed) -> Document:
    """``runbook resume --json`` (of runs continued in the background)."""
    started = [{"run_id": run.id, "pid": pid, "log_path": run.log_path} for run, pid in resumed.detached]
    watched = [{"run_id": run.id, "pid": run.pid, "watcher_pid": pid} for run, pid in resumed.watchers]
    return document(resumed=started, alive=[r.id for r in resumed.alive], watchers=watched)


def resume_preview_document(preview: ResumePreview) -> Document:
    """``runbook resume --dry-run --json``: per run, the tasks it would run and reopen."""
    from collections import Counter

    from runbook.snapshots.runs import date_ranges, expand_days

    runs: list[dict[str, Any]] = []
    for run, rows in preview.runs:
        counts = Counter(status for _, _, _, status in rows)
        days: dict[str, list[str]] = {}
        for processor, date, end_date, status in rows:
            if status != "already_done":  # built by another run since: skipped, not run
                days.setdefault(processor, []).extend(expand_days(date, end_date))
        runs.append(
            {
                "run_id": run.id,
                "status": run.status,
                "processors": list(run.processors),
                "reopen": {s: counts.get(s, 0) for s in ("failed", "blocked", "cancelled")},
                "already_done": counts.get("already_done", 0),
                "continue": {s: counts.get(s, 0) for s in ("pending", "running")},
                "ranges": {p: date_ranges(sorted(set(d)), d) for p, d in days.items()},
                "dates": [{"processor": p, "date": d, "end_date": e, "status": st} for p, d, e, st in rows],
            }
        )
    return document(runs=runs, alive=[r.id for r in preview.alive], rewatch=[r.id for r in preview.rewatch])


def adopted_document(adopted: Adopted, pid: int) -> Document:
    """``runbook adopt PID --json``: the run recorded, the process it follows, its watcher."""
    run = adopted.run
    return document(run_id=run.id, pid=pid, watcher_pid=adopted.watcher_pid, log_path=run.log_path)


def worker_document(report: WorkerReport) -> Document:
    """``runbook worker --json``: what the worker did and why it stopped."""
    return document(worker=report.worker_id, done=report.tally.done, failed=report.tally.failed,
                    lost=report.tally.lost, reason=report.reason,
                    refused={str(k): v for k, v in report.skipped.items()})  # fmt: skip


def stopped_document(run: Run) -> Document:
    """What ``runbook stop RUN_ID`` did, with the line it prints as ``message``."""
    adopted = run.origin == RunOrigin.ADOPTED and run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    if adopted:
        message = f"run {run.id}: SIGTERM sent to the adopted process PID {run.pid}; runbook resume {run.id} builds the rest"
    else:
        message = f"run {run.id}: stop requested (PID {run.pid}); resume later with: runbook resume {run.id}"
    return document(run_id=run.id, pid=run.pid, adopted=adopted, message=message)


def validation_document(found: Validation) -> Document:
    """``runbook validate --json``."""
    return document(start=found.start, end=found.end, passed=found.passed,
                    blocking_failures=found.blocking_failures, results=found.results)  # fmt: skip


def note_document(note: Note) -> Document:
    """``runbook note --json``."""
    from runbook.snapshots.sessions import note_snapshot

    return document(note=note_snapshot(note))


def session_document(session: WorkSession, report: Report | None = None) -> Document:
    """``runbook session start --json``, and ``session end --json`` with the handoff's path."""
    from runbook.snapshots.sessions import session_snapshot

    if report is None:
        return document(session=session_snapshot(session))
    return document(session=session_snapshot(session), handoff=report.path)


__all__ = [
    "Document", "Documents", "adopted_document", "note_document", "plan_document", "resumed_document", "session_document",
    "started_document", "stopped_document", "validation_document", "worker_document",
]  # fmt: skip
