"""Following a process started outside runbook (``runbook adopt``): its PID and its log.

The process is not runbook's child: runbook cannot wait for it or read its exit code. Its
liveness comes from its PID (with the process's start time, so a reused PID is not mistaken for
it); its progress from its log, where a pattern picks out the date it is at. A date of the run's
range that the log has moved past is built, the date the log shows now is running.

:class:`AdoptWatcher` is the small process ``runbook adopt`` leaves in the background. It owns
the run like a controller (by epoch), records progress as the log advances, and when the process
ends records the dates it reached as built, runs the processor's checks if it has some, and ends
the run: ``succeeded`` (or ``blocked`` by a check) when the log reached the last date, ``failed``
with the dates never reached otherwise, ``interrupted`` after ``runbook stop`` (which signals the
process). If the watcher itself dies, the run's liveness still comes from the PID, and
``runbook resume`` starts a new watcher, or settles the run from the log and builds the dates the
process never reached with the processor's own step.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runbook.clock import utcnow
from runbook.engine.liveness import adopted_alive, this_host
from runbook.engine.seams import Gatekeeper, Notices, gate_dates_message, judge_gate
from runbook.errors import RunBusy, UsageError
from runbook.formatting import as_utc
from runbook.kinds import WATCHER, NotifyEvent, RunStatus
from runbook.state.ownership import LostRun
from runbook.state.queue import Source
from runbook.state.records import Gate, Run
from runbook.state.store import Store

DEFAULT_PATTERN = r"\d{4}-\d{2}-\d{2}"
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
NOTIFY_WATCH_SECONDS = 10.0
READ_CHUNK_BYTES = 1 << 20
END_EVENTS = {
    RunStatus.SUCCEEDED: NotifyEvent.FINISHED,
    RunStatus.FAILED: NotifyEvent.FAILED,
    RunStatus.BLOCKED: NotifyEvent.BLOCKED,
}


def compile_pattern(text: str) -> re.Pattern[str]:
    """The date pattern of ``--pattern``; a bad one is one usage line."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"--pattern {text!r} is not a valid regular expression: {exc}") from None


class LogFollower:
    """Reads a growing log from where it stopped and keeps the highest date of [first, last] seen.

    A date is the pattern's group named ``date``, else its first group, else the whole match,
    parsed with ``date_format``. Dates outside the run's range are ignored (a line's timestamp is
    not the date being processed). A log that shrank was rotated or truncated: it is read again
    from its start. A line still being written is read once it ends.
    """

    def __init__(self, path: Path, pattern: re.Pattern[str], date_format: str, first: str, last: str) -> None:
        self.path = path
        self.pattern = pattern
        self.date_format = date_format
        self.first = first
        self.last = last
        self.offset = 0
        self.reached: str | None = None

    def read(self) -> str | None:
        """Read what was appended since the last call; return the highest date seen so far."""
        try:
            with self.path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self.offset:
                    self.offset = 0
                handle.seek(self.offset)
                while True:
                    chunk = handle.read(READ_CHUNK_BYTES)
                    if not chunk:
                        break
                    end = chunk.rfind(b"\n")
                    if end < 0:
                        if len(chunk) < READ_CHUNK_BYTES:
                            break  # an unfinished last line: read it when it ends
                        end = len(chunk) - 1  # a line longer than a chunk: take it in pieces
                    self._scan(chunk[: end + 1].decode("utf-8", "replace"))
                    self.offset += end + 1
                    handle.seek(self.offset)
        except OSError:
            pass  # gone or unreadable for now: keep what was seen
        return self.reached

    def _scan(self, text: str) -> None:
        for match in self.pattern.finditer(text):
            found = self._date(match)
            if (
                found is not None
                and self.first <= found <= self.last
                and (self.reached is None or found > self.reached)
            ):
                self.reached = found

    def _date(self, match: re.Match[str]) -> str | None:
        groups = match.groupdict()
        text = groups.get("date") or (match.group(1) if match.re.groups else match.group(0))
        if not text:
            return None
        try:
            return dt.datetime.strptime(text, self.date_format).date().isoformat()
        except ValueError:
            return None


def follower_of(run: Run) -> LogFollower:
    """The log follower of an adopted run, from what ``runbook adopt`` recorded."""
    info = run.options["adopted"]
    return LogFollower(
        Path(info["log_path"]),
        compile_pattern(info.get("pattern") or DEFAULT_PATTERN),
        info.get("date_format") or DEFAULT_DATE_FORMAT,
        run.start_date,
        run.end_date,
    )


def reached_of(run: Run) -> str | None:
    """The highest date an adopted run's log reached: read again, or as last recorded if the log
    is gone."""
    recorded = (run.options.get("adopted") or {}).get("reached")
    found = follower_of(run).read()
    return max(filter(None, (found, recorded)), default=None)


class AdoptWatcher:
    """Follows one adopted run until its process ends (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        notices: Notices | None = None,
        gatekeeper: Gatekeeper | None = None,
        say: Callable[[str], None] = lambda line: None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.notices = notices
        self.gatekeeper = gatekeeper
        self.say = say
        self.poll_seconds = poll_seconds
        self.host = this_host()
        self.watcher_id = f"{self.host[:40]}:{os.getpid()}:a{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._stop_reason = ""

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT end the watching (the process goes on); a closed terminal does not."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: Any) -> None:
            self._stop_reason = f"received {signal.Signals(signum).name}"
            self._stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def follow(self, seen_epoch: int) -> str:
        """Take the run (if it is still at ``seen_epoch``) and follow it until its process ends or
        this watcher is stopped; return the run's status then."""
        store = self.store
        run = store.get_run(self.run_id)
        if run is None or "adopted" not in run.options:
            raise UsageError(f"run {self.run_id} is not an adopted run")
        info = run.options["adopted"]
        # Dates done before this watcher: since the last heartbeat of a previous watcher, else since
        # the process started (what an operator divides by to get a rate).
        since = run.heartbeat_at or as_utc(info.get("process_started_at"))
        now = utcnow()
        epoch = store.take_run(
            run.id, seen_epoch=seen_epoch, owner=self.watcher_id, pid=int(info["pid"]), host=self.host,
            log_path=str(info["log_path"]), now=now,
        )  # fmt: skip
        if epoch is None:
            raise RunBusy(f"run {run.id} was taken by another process: not followed twice")
        run = store.get_run(run.id) or run
        store.register_worker(
            self.watcher_id, host=self.host, pid=os.getpid(), kind=WATCHER, run_id=run.id, now=now
        )
        store.add_event(
            "watcher_started",
            f"watcher PID {os.getpid()} follows PID {info['pid']} and its log {info['log_path']} (epoch {epoch})",
            run_id=run.id,
        )
        self.say(f"following PID {info['pid']} and {info['log_path']} for run {run.id} (epoch {epoch})")
        try:
            return self._follow(run, epoch, since or now)
        except LostRun:
            self.say(f"run {run.id} was taken over by another process: stopped following")
            return RunStatus.RUNNING
        finally:
            store.worker_stopped(self.watcher_id, utcnow(), self._stop_reason or None)
            if self.notices is not None:
                self.notices.flush()

    def _follow(self, run: Run, epoch: int, since: dt.datetime) -> str:
        follower = follower_of(run)
        recorded: str | None = None
        next_beat = next_watch = 0.0
        while True:
            alive = adopted_alive(run)
            reached = follower.read()
            now = utcnow()
            if not alive:
                return self._ended(run, epoch, reached, since, now)
            if self._stop.is_set():
                self.say(f"stopped following run {run.id} ({self._stop_reason}); PID {run.pid} goes on")
                return RunStatus.RUNNING
            if reached != recorded or time.monotonic() >= next_beat:
                self.store.record_reached(run.id, self.watcher_id, epoch, reached, since=since, now=now)
                if reached != recorded:
                    self.say(f"log at {reached}")
                recorded, since = reached, now
                next_beat = time.monotonic() + HEARTBEAT_SECONDS
            if self.notices is not None and time.monotonic() >= next_watch:
                self.notices.watch([run.id])
                next_watch = time.monotonic() + NOTIFY_WATCH_SECONDS
            self._stop.wait(self.poll_seconds)

    def _ended(self, run: Run, epoch: int, reached: str | None, since: dt.datetime, now: dt.datetime) -> str:
        """The process is gone: record how far it got and end the run."""
        store = self.store
        pid = run.pid
        current = store.get_run(run.id)
        if current is not None and current.stop_requested_at is not None:
            store.record_reached(
                run.id, self.watcher_id, epoch, reached, since=since, now=now, settle="pending"
            )
            reason = f"runbook stop: PID {pid} ended at {reached or 'no date yet'}"
            store.interrupt(run.id, self.watcher_id, epoch, reason, now)
            store.add_event("run_interrupted", f"run {run.id} interrupted ({reason})", run_id=run.id)
            if self.notices is not None:
                self.notices.emit(NotifyEvent.INTERRUPTED, run.id, epoch=epoch, details={"reason": reason})
            self.say(f"PID {pid} ended after a stop request: run {run.id} interrupted")
            return RunStatus.INTERRUPTED
        note = f"not reached: the adopted process (PID {pid}) ended with its log at {reached or 'no date of the range'}"
        store.record_reached(
            run.id, self.watcher_id, epoch, reached, since=since, now=now, settle="failed", note=note
        )
        self._judge_gates(run, epoch)
        status = store.finalize(run.id, self.watcher_id, epoch, utcnow()) or RunStatus.FAILED
        counts = store.progress([run.id])[run.id]
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        store.add_event(f"run_{status}", f"PID {pid} ended with its log at {reached}: {summary}", run_id=run.id,
                        data=dict(counts))  # fmt: skip
        if self.notices is not None and status in END_EVENTS:
            self.notices.emit(END_EVENTS[RunStatus(status)], run.id, epoch=epoch)
        self.say(f"PID {pid} ended with its log at {reached}: run {run.id} {status}")
        return status

    def _judge_gates(self, run: Run, epoch: int) -> None:
        """Run the processor's checks over the run's range (its gate), as a controller would."""
        now = utcnow()
        claimed = self.store.claim(
            self.watcher_id, [Source(run.id, epoch)], limit=0, pools={}, caps={}, now=now,
            lease_until=now + dt.timedelta(minutes=10), gates=True,
        )  # fmt: skip
        for gate in claimed.gates:
            failures: list[str] = []
            failed_dates: dict[str, str] = {}
            if self.gatekeeper is not None and self.gatekeeper.has_checks(gate.processor):
                failures, failed_dates = self._checks(run, epoch, gate)
            self.store.finish_gate(self.watcher_id, gate, failures, utcnow(), failed_dates)
            if failures or failed_dates:
                message = (
                    f"blocking check failed on {gate.processor}: {failures[0]}"
                    if failures
                    else gate_dates_message(gate, failed_dates)
                )
                self.store.add_event("gate_blocked", message, run_id=run.id, processor=gate.processor)
                self.say(message)

    def _checks(self, run: Run, epoch: int, gate: Gate) -> tuple[list[str], dict[str, str]]:
        """The processor's checks, on a thread, while this watcher keeps beating (checks on a big
        warehouse take minutes, and the run must not look abandoned meanwhile)."""
        assert self.gatekeeper is not None
        gatekeeper = self.gatekeeper
        failures: list[str] = []
        failed_dates: dict[str, str] = {}

        def judge() -> None:
            try:
                found, dates = judge_gate(gatekeeper, self.store, gate, run)
                failures.extend(found)
                failed_dates.update(dates)
            except Exception as exc:  # noqa: BLE001 - a check that cannot run blocks, as in a run
                failures.append(f"checks could not run: {exc}")

        judging = threading.Thread(target=judge, daemon=True, name="checks")
        judging.start()
        while True:
            judging.join(HEARTBEAT_SECONDS)
            if not judging.is_alive():
                return failures, failed_dates
            self.store.owner_beat(run.id, self.watcher_id, epoch, utcnow())
