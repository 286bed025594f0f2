"""The chaos suite: controllers and workers killed with -9 at random moments, runs and resumes
started together, on SQLite and on PostgreSQL, with real processes throughout.

Every step is tests/ledger_step.py, which records each execution and holds a per-date ``flock``
while it runs. The invariants, checked from that ledger and from the state store:

1. no date is lost: after a final ``runbook resume`` every date of every processor is built;
2. no date is executed twice at the same time (no ``overlap`` in the ledger);
3. no run is ever reported succeeded while any of its tasks is pending or running (a monitor
   polls the store during the whole suite);
4. of two overlapping runs started together exactly one starts; of two resumes of one run
   exactly one takes it.

The moments are random; the seed is printed with the counts (``CHAOS_SEED=...`` replays them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import ledger_command, ledger_spans, process_alive, read_ledger, stop_leftovers, wait_for

pytestmark = pytest.mark.chaos

START, END = "2024-01-01", "2024-01-12"
DAYS = [f"2024-01-{d:02d}" for d in range(1, 13)]
PROCESSORS = ("extract", "transform", "load")


def pipeline(ledger: Path) -> str:
    step = ledger_command(ledger)
    return (
        "workers: 3\n"
        "pools:\n  warehouse: 3\n"
        "processors:\n"
        f"  extract:\n    command: {step}\n"
        f"  transform:\n    needs: [extract]\n    pool: warehouse\n    command: {step}\n"
        f"  load:\n    needs: [transform]\n    pool: warehouse\n    command: {step}\n"
    )


class Store:
    """Reads the state store directly (the tests' own view, not runbook's)."""

    def __init__(self, ws: Any, url: str | None) -> None:
        self.ws = ws
        self.url = url

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url is None:
            import sqlite3

            if not self.ws.db.exists():
                return []
            with sqlite3.connect(f"file:{self.ws.db}?mode=ro", uri=True, timeout=30) as conn:
                return list(conn.execute(sql))
        import psycopg

        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            return list(conn.execute(sql))

    def run(self, run_id: int) -> tuple[str, int | None]:
        ((status, pid),) = self.rows(f"SELECT status, pid FROM run WHERE id = {int(run_id)}")
        return str(status), pid

    def succeeded_with_work_left(self) -> list[int]:
        return [
            int(r[0])
            for r in self.rows(
                "SELECT r.id FROM run r WHERE r.status = 'succeeded' AND EXISTS (SELECT 1 FROM task t "
                "WHERE t.run_id = r.id AND t.status IN ('pending', 'running'))"
            )
        ]


class Monitor(threading.Thread):
    """Polls the store for a run reported succeeded while work of it is left."""

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.violations: list[int] = []
        self.polls = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.violations += self.store.succeeded_with_work_left()
                self.polls += 1
            except Exception:  # noqa: BLE001 - the store may be busy or being created: poll again
                pass
            self.done.wait(0.2)


class Chaos:
    def __init__(self, ws: Any, store: Store, rng: random.Random) -> None:
        self.ws = ws
        self.store = store
        self.rng = rng
        self.counts: Counter[str] = Counter()
        self.runs: list[int] = []
        self.trace: list[Any] = []

    def command(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "runbook", *args], cwd=self.ws.root, env={**self.ws.env, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def start_run(self, *, workers: int = 3) -> tuple[int, int]:
        out = self.ws.runbook(
            "run", "--start", START, "--end", END, "--no-resume", "--workers", str(workers), "--detach", "--json",
            check=True,
        ).json()  # fmt: skip
        self.runs.append(out["run_id"])
        wait_for(
            lambda: self.store.run(out["run_id"])[0] != "queued", timeout=60, what="controller took the run"
        )
        return int(out["run_id"]), int(out["pid"])

    def kill(self, pid: int | None, what: str) -> None:
        if pid and process_alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not process_alive(pid), what=f"{what} gone")
            self.counts[f"{what}s killed with -9"] += 1

    def resume(self, run_id: int) -> int:
        out = self.ws.runbook("resume", str(run_id), "--detach", "--json", check=True).json()
        (resumed,) = out["resumed"]
        self.counts["resumes"] += 1
        return int(resumed["pid"])

    def wait_ended(self, run_id: int, timeout: float = 180) -> None:
        wait_for(lambda: self.store.run(run_id)[0] not in ("running", "queued"), timeout=timeout,
                 interval=0.2, what=f"run {run_id} ended")  # fmt: skip

    # -- scenarios ------------------------------------------------------------------------------

    def controllers_killed_at_random(self, rounds: int) -> None:
        run_id, pid = self.start_run()
        for _ in range(rounds):
            time.sleep(self.rng.uniform(0.2, 1.5))
            if self.store.run(run_id)[0] != "running":
                break
            self.kill(pid, "controller")
            pid = self.resume(run_id)
        self.wait_ended(run_id)

    def workers_killed_at_random(self, rounds: int) -> None:
        run_id, _ = self.start_run(workers=1)
        hosts = iter(f"machine-{n}" for n in range(100))

        def worker() -> subprocess.Popen[str]:
            self.counts["workers started"] += 1
            return self.command("worker", "--run", str(run_id), "--threads", "2", "--idle-exit", "3",
                                env={"RUNBOOK_HOST": next(hosts)})  # fmt: skip

        live = [worker(), worker()]
        for _ in range(rounds):
            time.sleep(self.rng.uniform(0.3, 1.5))
            victim = live.pop(self.rng.randrange(len(live)))
            self.kill(victim.pid, "worker")
            victim.communicate()
            live.append(worker())
        self.wait_ended(run_id)
        for proc in live:
            proc.communicate(timeout=60)

    def runs_started_together(self, rounds: int) -> None:
        for _ in range(rounds):
            racers = [
                self.command("run", "--start", START, "--end", END, "--no-resume", "--detach", "--json"),
                self.command(
                    "run", "--start", "2024-01-05", "--end", END, "--no-resume", "--detach", "--json"
                ),
            ]
            outputs = [proc.communicate(timeout=120) for proc in racers]
            results = [(proc.returncode, out, err) for proc, (out, err) in zip(racers, outputs, strict=True)]
            self.counts["runs started together (pairs)"] += 1
            assert sorted(code for code, _, _ in results) == [0, 2], results
            (started,) = [out for code, out, _ in results if code == 0]
            run_id = json.loads(started)["run_id"]
            self.runs.append(run_id)
            self.wait_ended(run_id)

    def resumes_started_together_survivor_killed(self, rounds: int) -> None:
        run_id, pid = self.start_run()
        for _ in range(rounds):
            time.sleep(self.rng.uniform(0.3, 1.0))
            if self.store.run(run_id)[0] != "running":
                break
            self.kill(pid, "controller")
            racers = [self.command("resume", str(run_id)) for _ in range(2)]
            self.counts["resumes started together (pairs)"] += 1
            # The moment one of the twins ends (the one that lost), kill the other.
            first = wait_for(lambda twins=racers: next((p for p in twins if p.poll() is not None), None),
                             timeout=60, what="one twin ended")  # fmt: skip
            other = next(p for p in racers if p is not first)
            if first.returncode == 5:
                self.kill(other.pid, "survivor")
            codes = sorted([first.returncode, other.wait(timeout=120)])
            for proc in racers:
                proc.communicate()
            assert codes in ([-signal.SIGKILL, 5], [0, 5]), codes
            self.trace.append(
                (first.pid, first.returncode, other.pid, other.returncode, self.store.run(run_id))
            )
            pid = 0
        final = self.ws.runbook("resume", str(run_id), "--detach")
        assert final.code == 0, (final.stderr, self.trace, self.store.run(run_id))
        self.wait_ended(run_id)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return None


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def test_chaos(make_workspace: Any, store_url: str | None, record_property: Any) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
    env = {"RUNBOOK_LEASE_SECONDS": "2", "LEDGER_SLEEP": "0.15"}
    if store_url:
        env["RUNBOOK_DATABASE_URL"] = store_url
    ws = make_workspace("", extra_env=env)
    ledger = ws.root / "ledger.txt"
    ws.write(pipeline(ledger))
    store = Store(ws, store_url)
    chaos = Chaos(ws, store, random.Random(seed))
    monitor = Monitor(store)
    monitor.start()
    try:
        chaos.controllers_killed_at_random(rounds=4)
        chaos.workers_killed_at_random(rounds=3)
        chaos.runs_started_together(rounds=3)
        chaos.resumes_started_together_survivor_killed(rounds=3)
        final = ws.runbook("resume", "--json", timeout=300)  # anything left over, to the end
        assert final.code == 0, final.stderr
    finally:
        monitor.done.set()
        monitor.join()

    entries = read_ledger(ledger)
    spans = ledger_spans(entries)
    overlaps = [e for e in entries if e.kind == "overlap"]
    built = {(e.processor, e.date) for e in entries if e.kind == "end"}
    left = store.rows("SELECT run_id, processor, date, status FROM task WHERE status <> 'succeeded'")
    statuses = Counter(str(r[0]) for r in store.rows("SELECT status FROM run"))
    chaos.counts.update(
        {
            "runs": len(chaos.runs),
            "step executions": len(spans),
            "step executions killed mid-way": sum(1 for s in spans if s[3] is None),
            "store polls by the monitor": monitor.polls,
        }
    )
    record_property("chaos", {"store": "postgresql" if store_url else "sqlite", "seed": seed, **chaos.counts})
    assert not overlaps, f"seed {seed}: a date ran twice at the same time: {overlaps[:3]}"
    assert not monitor.violations, (
        f"seed {seed}: runs reported succeeded with work left: {monitor.violations}"
    )
    assert built == {(p, d) for p in PROCESSORS for d in DAYS}, f"seed {seed}: dates lost"
    assert not left, f"seed {seed}: tasks not built after the final resume: {left[:5]}"
    assert statuses == Counter({"succeeded": len(chaos.runs)}), f"seed {seed}: {statuses}"
    assert chaos.counts["controllers killed with -9"] >= 2 and chaos.counts["workers killed with -9"] >= 1
