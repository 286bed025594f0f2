"""Adopting a process started outside runbook: ``runbook adopt PID --log FILE --processor P``.

The backfill someone started by hand with ``nohup`` becomes a run like any other: it shows in
``status``, ``show``, the handoff and the dashboard (one read model), its dates are recorded as
built when its log has passed them, and ``runbook stop`` and ``runbook resume`` act on it. How it
is followed is in :mod:`runbook.engine.adopt`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from runbook.app.resume import Resume
from runbook.app.runs import overlap_guard
from runbook.clock import utcnow
from runbook.engine.liveness import pid_alive, process_started_at, this_host
from runbook.engine.versions import resolve_versions
from runbook.errors import UsageError
from runbook.formatting import iso_utc
from runbook.kinds import RunOrigin, RunStatus, TaskStatus
from runbook.state.records import Run


@dataclass(frozen=True)
class Adopted:
    """The run ``runbook adopt`` recorded and the PID of the watcher it left in the background."""

    run: Run
    watcher_pid: int


class Adopt(Resume):
    """The adopt use cases (mixed into :class:`runbook.app.App`)."""

    def adopt(
        self,
        pid: int,
        log: str,
        processor: str,
        start: dt.date | None,
        end: dt.date | None,
        *,
        pattern: str | None = None,
        date_format: str | None = None,
        force: bool = False,
    ) -> Adopted:
        """Record process ``pid`` as a run of ``processor`` over [start, end], followed through its
        log, and leave a watcher in the background. A process that does not run, a log that cannot
        be read, a bad pattern or range: one UsageError line, nothing recorded."""
        from runbook.engine.adopt import DEFAULT_DATE_FORMAT, DEFAULT_PATTERN, compile_pattern
        from runbook.engine.planner import resolve_range

        first, last = resolve_range(self.config, [processor], start, end)
        pattern = pattern or DEFAULT_PATTERN
        compile_pattern(pattern)
        date_format = date_format or DEFAULT_DATE_FORMAT
        try:
            dt.datetime.strptime(first.strftime(date_format), date_format)
        except ValueError:
            raise UsageError(f"--date-format {date_format!r} cannot read back a date it writes") from None
        if pid <= 0 or not pid_alive(pid):
            raise UsageError(f"no process with PID {pid} is running: nothing to adopt")
        path = Path(log).expanduser().resolve()
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise UsageError(f"cannot read log {path}: {exc.strerror or exc}") from None
        self.notifier()  # a webhook whose ${VAR} is unset: one line here, not a watcher that dies
        return self._record_adoption(pid, path, processor, first, last, pattern, date_format, force)

    def _record_adoption(
        self, pid: int, path: Path, processor: str, first: dt.date, last: dt.date, pattern: str, date_format: str,
        force: bool,
    ) -> Adopted:  # fmt: skip
        proc = self.config.processors[processor]
        version = resolve_versions(self.config, [processor], str(self.workspace.root))[processor]
        command = self.redactor(_command_line(pid) or f"PID {pid}")
        store = self.store
        session = store.open_session()
        began = process_started_at(pid)
        options = {
            "adopted": {
                "pid": pid, "log_path": str(path), "pattern": pattern, "date_format": date_format,
                "process_started_at": iso_utc(began), "reached": None,
            }
        }  # fmt: skip
        run = store.admit_run(
            overlap_guard([processor], first, last, force=force), processors=[processor],
            start_date=first.isoformat(), end_date=last.isoformat(), options=options, versions={processor: version},
            workers=1, command_line=command, config_path=str(self.workspace.config_path),
            session_id=session.id if session else None, pid=pid, host=this_host(), log_path=str(path),
            origin=RunOrigin.ADOPTED, status=RunStatus.RUNNING, started_at=began or utcnow(),
        )  # fmt: skip
        calendar = self.calendar(first, last)
        store.add_tasks(
            run.id,
            (
                {
                    "processor": processor,
                    "date": day.isoformat(),
                    "end_date": day.isoformat(),
                    "seq": seq,
                    "status": TaskStatus.SKIPPED if reason else TaskStatus.PENDING,
                    "skip_reason": reason,
                    "code_version": None if reason else version,
                    "max_attempts": proc.retries.tries,
                    "pool": proc.pool,
                }  # fmt: skip
                for seq, (day, reason) in enumerate(
                    calendar.dates(first, last, self.config.bootstrap_days(processor))
                )
            ),
        )
        self.record_graph(run.id)
        store.add_event(
            "run_adopted", f"adopted PID {pid} ({command}); its log {path} tells its progress", run_id=run.id
        )
        return Adopted(run, self.spawn_watcher(run.id, epoch=run.epoch))

    def follow_adopted(self, run_id: int, *, epoch: int, say: object = None) -> str:
        """Follow an adopted run in this process until its process ends (the background watcher)."""
        from runbook.engine.adopt import AdoptWatcher

        run = self.get_run(run_id)
        if run.origin != RunOrigin.ADOPTED:
            raise UsageError(f"run {run_id} was not adopted")
        if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            raise UsageError(f"run {run_id} is {run.status}: nothing to follow")
        watcher = AdoptWatcher(
            self.store, run_id, notices=self.notifier(), gatekeeper=self.gatekeeper(),
            say=say if callable(say) else (lambda line: None),
        )  # fmt: skip
        watcher.install_signal_handlers()
        return watcher.follow(epoch)


def _command_line(pid: int) -> str | None:
    """The command line of ``pid`` (Linux /proc), or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part) or None
