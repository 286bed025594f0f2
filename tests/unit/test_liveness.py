"""Liveness of a run's controller: PID on this host, heartbeat elsewhere, PID reuse detected."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

from runbook.clock import utcnow
from runbook.engine.liveness import controller_alive, pid_alive, process_started_at
from runbook.state.records import Run


def make_run(**fields: object) -> Run:
    base: dict[str, object] = {
        "id": 1,
        "status": "running",
        "processors": ["a"],
        "start_date": "2024-01-01",
        "end_date": "2024-01-02",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "created_at": utcnow(),
        "heartbeat_at": utcnow(),
    }
    base.update(fields)
    return Run(**base)  # type: ignore[arg-type]


def test_a_live_pid_with_a_fresh_heartbeat_is_alive() -> None:
    assert controller_alive(make_run())


def test_a_dead_pid_is_not_alive_at_once() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    assert not controller_alive(make_run(pid=child.pid))


def test_a_pid_reused_by_a_process_born_after_the_last_heartbeat_is_not_the_controller() -> None:
    started = process_started_at(os.getpid())
    assert started is not None and started <= utcnow()
    # This process is alive, but it started long after a heartbeat of a day ago: not our controller.
    yesterday = utcnow() - dt.timedelta(days=1)
    assert not controller_alive(make_run(heartbeat_at=yesterday), stale_seconds=10 * 86400)
    assert controller_alive(make_run(heartbeat_at=utcnow()), stale_seconds=10 * 86400)


def test_another_host_is_judged_by_its_heartbeat_alone() -> None:
    fresh = make_run(host="elsewhere", pid=1)
    stale = make_run(host="elsewhere", pid=1, heartbeat_at=utcnow() - dt.timedelta(minutes=5))
    assert controller_alive(fresh)
    assert not controller_alive(stale)


def test_finished_runs_are_never_alive() -> None:
    assert not controller_alive(make_run(status="succeeded"))
