"""Is a run's controller still alive? Judged from its PID on this host, its heartbeat elsewhere.

After a reboot (or simply a long time) the controller's PID may belong to another process: a
process that started after the run's last heartbeat cannot be its controller.
"""

from __future__ import annotations

import datetime as dt
import os
import socket

from runbook.clock import utcnow
from runbook.formatting import as_utc
from runbook.kinds import ACTIVE_RUN_STATUSES, RunOrigin, RunStatus
from runbook.state.records import Run, Worker

STALE_HEARTBEAT_SECONDS = 60.0  # the default lease: a process silent for longer is gone
# Clock ticks and boot time only resolve a process start to about a second.
START_SLACK_SECONDS = 2.0


def this_host() -> str:
    """This machine's name in the state store: ``RUNBOOK_HOST`` if set (tests give processes on
    one machine distinct identities with it), else the host name."""
    return os.environ.get("RUNBOOK_HOST") or socket.gethostname()


def stale_after() -> float:
    """Seconds without a heartbeat after which a process on another host counts as gone: the
    lease (``RUNBOOK_LEASE_SECONDS``, the same for every process of a team), 60 s by default."""
    try:
        return float(os.environ.get("RUNBOOK_LEASE_SECONDS") or STALE_HEARTBEAT_SECONDS)
    except ValueError:
        return STALE_HEARTBEAT_SECONDS


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a running (not zombie) process."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _stat(pid)
    return stat is None or stat[0] != "Z"


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def process_started_at(pid: int) -> dt.datetime | None:
    """When ``pid`` started (Linux /proc), or None when that cannot be told."""
    stat = _stat(pid)
    if stat is None or len(stat) < 20:
        return None
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError):
        return None
    return dt.datetime.fromtimestamp(boot + int(stat[19]) / ticks, dt.UTC)


def adopted_pid(run: Run) -> int | None:
    """The PID of the process an adopted run follows (``runbook adopt``), while it is followed;
    None for other runs, and once a controller took the run over (``runbook resume``)."""
    if run.origin != RunOrigin.ADOPTED:
        return None
    pid = (run.options.get("adopted") or {}).get("pid")
    return pid if isinstance(pid, int) and pid == run.pid else None


def adopted_alive(run: Run) -> bool:
    """Whether the adopted process still runs: its PID, unless a later process now has it."""
    pid = adopted_pid(run)
    if pid is None or not pid_alive(pid):
        return False
    recorded = as_utc((run.options.get("adopted") or {}).get("process_started_at"))
    started = process_started_at(pid)
    if recorded is not None and started is not None:
        return abs((started - recorded).total_seconds()) <= START_SLACK_SECONDS
    return True


def _watcher_settling(run: Run, stale_seconds: float) -> bool:
    """The adopted process is gone, and its watcher (``host:pid:token`` in ``controller_id``)
    still runs, beating: it is recording the end (checks included)."""
    beat = run.heartbeat_at
    if not run.controller_id or beat is None or (utcnow() - beat).total_seconds() >= stale_seconds:
        return False
    parts = run.controller_id.split(":")
    return len(parts) == 3 and parts[1].isdigit() and pid_alive(int(parts[1]))


def controller_alive(run: Run, *, stale_seconds: float | None = None) -> bool:
    """True when the run's controller still runs: its PID on this host, its heartbeat elsewhere.

    An adopted run is alive while the process it follows is: its PID on this host (whether or not
    its watcher still records progress), its watcher's heartbeat elsewhere; and while its watcher
    records how the process ended.
    """
    if run.status not in ACTIVE_RUN_STATUSES:
        return False
    stale_seconds = stale_seconds or stale_after()
    if run.host == this_host() and adopted_pid(run) is not None:
        return adopted_alive(run) or _watcher_settling(run, stale_seconds)
    beat = run.heartbeat_at or run.created_at
    fresh = beat is not None and (utcnow() - beat).total_seconds() < stale_seconds
    if run.host != this_host():
        return fresh
    if not pid_alive(run.pid):
        return False
    assert run.pid is not None
    started = process_started_at(run.pid)
    slack = dt.timedelta(seconds=START_SLACK_SECONDS)
    if started is not None and run.heartbeat_at is not None and started > run.heartbeat_at + slack:
        return False  # the PID was reused by a process born after the last heartbeat
    return fresh or run.status == RunStatus.QUEUED


def worker_alive(
    worker: Worker, now: dt.datetime | None = None, *, stale_seconds: float | None = None
) -> bool:
    """A worker is alive until it stopped, while its heartbeat is fresh (and its PID, here)."""
    if worker.stopped_at is not None:
        return False
    beat = worker.heartbeat_at or worker.started_at
    fresh = beat is not None and ((now or utcnow()) - beat).total_seconds() < (stale_seconds or stale_after())
    return fresh and (worker.host != this_host() or pid_alive(worker.pid))


def liveness(run: Run) -> bool | None:
    """Whether the run's controller is alive: None while a queued run has no controller to judge."""
    if run.status == RunStatus.QUEUED and not run.pid and not run.controller_id:
        return None
    return controller_alive(run)


def effective_status(run: Run, alive: bool | None) -> str:
    """The stored status, except that an active run whose controller is gone is ``interrupted``."""
    if run.status in ACTIVE_RUN_STATUSES and alive is False and (run.controller_id or run.pid):
        return RunStatus.INTERRUPTED
    return run.status


def rate_and_eta(
    finished: int, seconds: float, remaining: int, status: str
) -> tuple[float | None, float | None]:
    """Tasks finished per hour so far, and the seconds the remaining ones need at that rate."""
    rate = finished / seconds * 3600 if seconds > 0 else None
    eta = remaining / rate * 3600 if rate and remaining and status == RunStatus.RUNNING else None
    return rate, eta
