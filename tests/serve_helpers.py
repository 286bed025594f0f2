"""A workspace with every kind of heat-map cell, and a real `runbook serve` process over it.

The workspace is built by real runs: ``base`` fails on 2026-01-06 (so ``derived`` is blocked
there), 2026-01-04 is an off-day, ``derived`` skips its first two dates (bootstrap), ``base`` then
changes its code version and rebuilds 2026-01-11..12 (the older dates become stale), 2026-01-13..20
were never built, and a detached run of ``slow`` is running (one date) and queued (the others) while
the tests look.

(The failing step waits half a second before it exits: a step that fails at once can lose its exit
code to the sweep of orphaned processes on this branch, a race fixed apart from the dashboard.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO, WorkspaceFixture
from core_helpers import stop_leftovers, wait_for

TOKEN = "s3cret-dashboard-token-4242"
CONFIG = """\
name: serve-test
calendar:
  start: 2026-01-01
  end: 2026-01-20
  off_days: [2026-01-04]
  seasons: [2026-01-01]
processors:
  base:
    phase: "1"
    description: The first step.
    version: {version}
    command: [sh, -c, "echo building {{{{ processor }}}} {{{{ date }}}}; if [ {{{{ date }}}} = 2026-01-06 ]; then echo 'ValueError: boom on {{{{ date }}}}'; sleep 0.5; exit 3; fi"]
  derived:
    phase: "2"
    needs: [base]
    bootstrap_days: 2
    version: v1
    command: [sh, -c, "echo derived {{{{ date }}}}"]
    checks:
      - name: answer
        severity: warn
        query: SELECT 42 AS n, 7.5 AS pct
        expect: ["n >= 40", "pct >= 5"]
  slow:
    phase: "2"
    version: v1
    command: [sh, -c, "sleep 1800"]  # outlives the tests of a busy machine; stopped at teardown
"""


def build_workspace(root: Path) -> WorkspaceFixture:
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_") or k == "RUNBOOK_BQEMU_PYTHON"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(root)])
    ws = WorkspaceFixture(root, env)
    ws.write(CONFIG.format(version="v1"))
    first = ws.runbook("run", "base", "derived", "--start", "2026-01-01", "--end", "2026-01-12")
    assert first.code == 1, first.stderr  # base failed on 2026-01-06
    ws.write(CONFIG.format(version="v2"))
    ws.runbook("run", "base", "--start", "2026-01-11", "--end", "2026-01-12", "--no-resume", check=True)
    ws.runbook("validate", "derived", "--start", "2026-01-01", "--end", "2026-01-12", check=True)
    ws.runbook(
        "run",
        "slow",
        "--start",
        "2026-01-13",
        "--end",
        "2026-01-16",
        "--workers",
        "1",
        "--detach",
        check=True,
    )

    def slow_running() -> bool:
        runs = ws.runbook("status", "--json").json()["runs"]
        return any(run["processors"] == ["slow"] and run["progress"]["running"] for run in runs)

    wait_for(slow_running, timeout=60, interval=0.5, what="the slow run's first step")
    return ws


@dataclass
class Server:
    """A `runbook serve` subprocess; ``url`` ends without a slash."""

    process: subprocess.Popen[bytes]
    url: str
    out: Path
    err: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8") + self.err.read_text(encoding="utf-8")


def start_server(ws: WorkspaceFixture, *args: str, token: str | None = None, name: str = "serve") -> Server:
    out, err = ws.root / f"{name}.out", ws.root / f"{name}.err"
    env = dict(ws.env)
    if token is not None:
        env["RUNBOOK_SERVE_TOKEN"] = token
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "runbook", "serve", "--port", "0", *args],
            cwd=ws.root, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def announced() -> str | None:
        if process.poll() is not None:
            raise AssertionError(
                f"runbook serve exited {process.returncode}: {err.read_text(encoding='utf-8')}"
            )
        for line in out.read_text(encoding="utf-8").splitlines():
            if "http://" in line:
                return line.split("http://", 1)[1].rstrip("/")
        return None

    address = wait_for(announced, timeout=60, what="runbook serve to listen")
    return Server(process, f"http://{address}", out, err)


def teardown(ws: WorkspaceFixture, *servers: Server) -> None:
    for server in servers:
        server.stop()
    stop_leftovers(ws.root)
