"""What the controller costs on PostgreSQL against SQLite, how much memory it needs, and how a run
scales over worker processes.

Three measurements (each can be skipped):

- ``store``: the same run (one processor whose step is an in-process no-op, N dates) on a SQLite
  file and on a fresh PostgreSQL database, in this process through the real ``App`` API, with 1
  and 4 workers; rounds alternate between the stores so a slow spell hits both. Printed: the
  controller's cost per date on each, their ratio, and the cost of a bare loop that claims and
  finishes one row per date in its own transaction (what any store costs at the least).
- ``memory``: the peak RSS of a real ``runbook run`` process for a run of 100,000 and 1,000,000
  tasks (a chain of processors over many dates, no-op steps): planning and recording the run, then
  running it for ``--memory-seconds`` before a graceful stop (SIGTERM). The peak is sampled from
  /proc while it runs.
- ``scaling``: a run of steps that sleep 50 ms, all in one pool, on PostgreSQL: its controller
  alone (1 process), then with 1 or 3 ``runbook worker`` processes (2 and 4 processes), each
  running one step at a time; and 4 processes with the pool set below them. Printed: tasks per
  second and the speed-up over one process.

Example: .venv/bin/python bench/concurrency.py --dates 2000 --skip memory
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from overhead import machine  # noqa: E402  (bench/ is on the path when this script runs)

PG_ADMIN = os.environ.get("RUNBOOK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
FIRST_DATE = dt.date(1950, 1, 1)


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    import psycopg

    name = f"runbook_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_workspace(folder: Path, processors: int, dates: int, step: str, pool: int | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "bench_steps.py").write_text(
        "import time\n\ndef noop():\n    return None\n\ndef nap():\n    time.sleep(0.05)\n", encoding="utf-8"
    )
    last = FIRST_DATE + dt.timedelta(days=dates - 1)
    lines = [f"calendar:\n  start: {FIRST_DATE}\n  end: {last}"]
    if pool:
        lines.append(f"pools:\n  warehouse: {pool}")
    lines.append("processors:")
    for n in range(processors):
        lines.append(f'  p{n}:\n    python: "bench_steps:{step}"')
        if n:
            lines.append(f"    needs: [p{n - 1}]")
        if pool:
            lines.append("    pool: warehouse")
    (folder / "runbook.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "runbook.yaml"


# -- store: SQLite against PostgreSQL ---------------------------------------------------------


def run_in_process(config: Path, url: str | None, workers: int) -> float:
    """Seconds to plan, record and execute the run of ``config`` with the store at ``url``."""
    from runbook.app import App, RunRequest
    from runbook.workspace import Workspace

    if url:
        os.environ["RUNBOOK_DATABASE_URL"] = url
    else:
        os.environ.pop("RUNBOOK_DATABASE_URL", None)
    app = App(Workspace.load(str(config)))
    assert app.store is not None  # creating the schema is not counted
    try:
        started = time.perf_counter()
        request = RunRequest(processors=[], workers=workers)
        run = app.submit(request, app.plan(request))
        outcome = app.execute(run.id)
        wall = time.perf_counter() - started
    finally:
        app.close()
        os.environ.pop("RUNBOOK_DATABASE_URL", None)
    if outcome.status != "succeeded":
        raise SystemExit(f"run did not succeed: {outcome.status}")
    return wall


def bare_loop(url: str | None, dates: int, folder: Path) -> float:
    """Seconds for a plain loop that claims and finishes one row per date, a transaction each."""
    rows = [(n, "pending") for n in range(dates)]
    if url is None:
        conn = sqlite3.connect(folder / "bare.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
        started = time.perf_counter()
        for n in range(dates):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE t SET status = 'running' WHERE id = ? AND status = 'pending' RETURNING id", (n,)
            )
            conn.execute("UPDATE t SET status = 'succeeded' WHERE id = ?", (n,))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return elapsed
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, %s)", rows)
        started = time.perf_counter()
        for n in range(dates):
            with conn.transaction():
                conn.execute(
                    "UPDATE t SET status = 'running' WHERE id = %s AND status = 'pending' RETURNING id", (n,)
                ).fetchall()
                conn.execute("UPDATE t SET status = 'succeeded' WHERE id = %s", (n,))
        return time.perf_counter() - started


def measure_stores(dates: int, rounds: int, tmp: Path) -> None:
    print(f"\n## store: {dates:,} dates of one no-op python step, best of {rounds} rounds (ms per date)")
    best: dict[tuple[str, int | str], float] = {}
    for round_ in range(rounds):
        for workers in (1, 4):
            for store in ("sqlite", "postgresql"):
                folder = tmp / f"store-{round_}-{workers}-{store}"
                config = write_workspace(folder, 1, dates, "noop")
                if store == "sqlite":
                    wall = run_in_process(config, None, workers)
                else:
                    with pg_database() as url:
                        wall = run_in_process(config, url, workers)
                key = (store, workers)
                best[key] = min(best.get(key, float("inf")), wall / dates * 1000)
        for store in ("sqlite", "postgresql"):
            folder = tmp / f"bare-{round_}-{store}"
            folder.mkdir()
            if store == "sqlite":
                wall = bare_loop(None, dates, folder)
            else:
                with pg_database() as url:
                    wall = bare_loop(url, dates, folder)
            best[(store, "bare")] = min(best.get((store, "bare"), float("inf")), wall / dates * 1000)
    print(f"{'':<34}{'SQLite':>10}{'PostgreSQL':>12}{'ratio':>8}")
    for label, key in (
        ("controller, 1 worker", 1),
        ("controller, 4 workers", 4),
        ("bare claim + finish loop", "bare"),
    ):
        lite, pg = best[("sqlite", key)], best[("postgresql", key)]
        print(f"{label:<34}{lite:>10.3f}{pg:>12.3f}{pg / lite:>8.2f}")


# -- memory -----------------------------------------------------------------------------------


def rss_mb(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure_memory(counts: list[int], seconds: float, tmp: Path) -> None:
    print(f"\n## memory: peak RSS of `runbook run` (SQLite), stopped {seconds:g}s after its first step")
    print(f"{'tasks':>10}{'processors':>12}{'dates':>8}{'record s':>10}{'built':>8}{'peak RSS MB':>13}")
    for tasks in counts:
        processors = 10 if tasks <= 100_000 else 40
        dates = tasks // processors
        folder = tmp / f"memory-{tasks}"
        config = write_workspace(folder, processors, dates, "noop")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(folder)])
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runbook", "--config", str(config), "run", "--workers", "4", "--json"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        db = folder / "state" / "runbook.db"
        peak = 0.0
        first_step: float | None = None
        while proc.poll() is None:
            peak = max(peak, rss_mb(proc.pid, "VmHWM") or 0.0)
            if first_step is None and db.exists() and built(db) > 0:
                first_step = time.perf_counter()
            if first_step is not None and time.perf_counter() - first_step >= seconds:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
                break
            time.sleep(0.5)
        record = (first_step or time.perf_counter()) - started
        print(f"{tasks:>10,}{processors:>12}{dates:>8,}{record:>10.1f}{built(db):>8,}{peak:>13.0f}")


def built(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM task WHERE status = 'succeeded'").fetchone()[0])
    except sqlite3.Error:
        return 0


# -- scaling ----------------------------------------------------------------------------------


def measure_scaling(tasks: int, tmp: Path) -> None:
    print(
        f"\n## scaling: {tasks} steps that sleep 50 ms, one pool, PostgreSQL; one step at a time per process"
    )
    print(f"{'processes':>10}{'pool':>6}{'wall s':>9}{'tasks/s':>9}{'speed-up':>10}")
    base: float | None = None
    for processes, pool in ((1, 4), (2, 4), (4, 4), (4, 2)):
        folder = tmp / f"scaling-{processes}-{pool}"
        config = write_workspace(folder, 1, tasks, "nap", pool=pool)
        with pg_database() as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
            env.update(RUNBOOK_DATABASE_URL=url, PYTHONPATH=os.pathsep.join([str(REPO), str(folder)]))
            command = [sys.executable, "-m", "runbook", "--config", str(config)]
            out = subprocess.run(
                [*command, "run", "--workers", "1", "--detach", "--json"], env=env, cwd=folder,
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            run_id = json.loads(out)["run_id"]
            helpers = [
                subprocess.Popen(
                    [*command, "worker", "--run", str(run_id), "--threads", "1", "--idle-exit", "2"],
                    env={**env, "RUNBOOK_HOST": f"bench-{n}"}, cwd=folder, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for n in range(processes - 1)
            ]  # fmt: skip
            wall = wait_run(url, run_id)
            for helper in helpers:
                helper.wait(timeout=60)
        rate = tasks / wall
        base = base or rate
        print(f"{processes:>10}{pool:>6}{wall:>9.2f}{rate:>9.1f}{rate / base:>10.2f}")


def wait_run(url: str, run_id: int) -> float:
    """Seconds from the run's start to its end, as its controller recorded them."""
    import psycopg

    deadline = time.monotonic() + 600
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row: Any = conn.execute(
                "SELECT status, started_at, finished_at FROM run WHERE id = %s", (run_id,)
            ).fetchone()
            if row and row[0] not in ("queued", "running"):
                if row[0] != "succeeded":
                    raise SystemExit(f"scaling run ended {row[0]}")
                return float((row[2] - row[1]).total_seconds())
            time.sleep(0.2)
    raise SystemExit("scaling run did not end in 10 minutes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Store cost, memory and worker scaling (see bench/README.md)."
    )
    parser.add_argument(
        "--dates", type=int, default=2000, help="dates of the store comparison (default 2000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the store comparison (default 3)")
    parser.add_argument(
        "--memory-tasks", default="100000,1000000", help="run sizes of the memory measurement"
    )
    parser.add_argument(
        "--memory-seconds", type=float, default=30.0, help="how long each run executes (default 30)"
    )
    parser.add_argument(
        "--scaling-tasks", type=int, default=240, help="steps of the scaling run (default 240)"
    )
    parser.add_argument("--skip", action="append", default=[], choices=["store", "memory", "scaling"])
    args = parser.parse_args(argv)
    print("runbook concurrency benchmarks")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp:
        folder = Path(tmp)
        if "store" not in args.skip:
            measure_stores(args.dates, args.rounds, folder)
        if "memory" not in args.skip:
            counts = [int(part.replace("_", "")) for part in args.memory_tasks.split(",")]
            measure_memory(counts, args.memory_seconds, folder)
        if "scaling" not in args.skip:
            measure_scaling(args.scaling_tasks, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
