"""The controller's own cost per date, against a plain loop that writes one SQLite row per date.

For N dates of one processor whose step does (almost) nothing, a run goes through the real
``App`` API in this process: plan, record the tasks, execute them with 1 and 2 workers. The
controller's cost per date is the run's wall time minus the step's own time, divided by N:

- ``python:`` no-op: an in-process function that returns at once (its time is ~0);
- ``command: "true"``: the cost of spawning ``true`` N times in a plain loop (on as many threads
  as the run has workers, the same way the command executor spawns) is subtracted.

Process start-up and config loading are not counted; planning and task insertion are.

Example: .venv/bin/python bench/overhead.py --dates 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runbook.app import App, RunRequest  # noqa: E402
from runbook.workspace import Workspace  # noqa: E402

FIRST_DATE = dt.date(2000, 1, 1)
TARGET_MS_PER_DATE = 2.0
STEPS = {
    "python no-op": 'python: "bench_steps:noop"',
    'command "true"': 'command: "true"',
}


@dataclass
class Measure:
    """The best wall time of one step kind and worker count, and the step's own time to subtract."""

    step: str
    workers: int
    wall_seconds: float
    step_seconds: float
    dates: int

    @property
    def controller_ms_per_date(self) -> float:
        return max(self.wall_seconds - self.step_seconds, 0.0) / self.dates * 1000

    @property
    def tasks_per_second(self) -> float:
        return self.dates / self.wall_seconds


def sqlite_baseline(path: Path, dates: int) -> float:
    """Seconds for a plain loop writing one row per date, one commit each (WAL, synchronous NORMAL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE done (id INTEGER PRIMARY KEY, date TEXT NOT NULL, status TEXT NOT NULL)")
    started = time.perf_counter()
    for offset in range(dates):
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO done (date, status) VALUES (?, ?)",
            ((FIRST_DATE + dt.timedelta(days=offset)).isoformat(), "succeeded"),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def spawn_true(count: int) -> None:
    """Run ``true`` ``count`` times with the command executor's Popen options, reading its output."""
    for _ in range(count):
        proc = subprocess.Popen(
            ["true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        proc.stdout.read()
        proc.stdout.close()
        proc.wait()


def spawn_baseline(dates: int, threads: int) -> float:
    """Seconds to spawn ``true`` ``dates`` times from ``threads`` threads, as the command executor does."""
    shares = [dates // threads + (1 if n < dates % threads else 0) for n in range(threads)]
    workers = [threading.Thread(target=spawn_true, args=(share,)) for share in shares]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def make_workspace(folder: Path, step: str, dates: int) -> Workspace:
    folder.mkdir(parents=True)
    (folder / "bench_steps.py").write_text("def noop():\n    return None\n", encoding="utf-8")
    last = FIRST_DATE + dt.timedelta(days=dates - 1)
    (folder / "runbook.yaml").write_text(
        textwrap.dedent(f"""\
            calendar:
              start: {FIRST_DATE}
              end: {last}
            processors:
              noop:
                {STEPS[step]}
            """),
        encoding="utf-8",
    )
    return Workspace.load(str(folder / "runbook.yaml"))


def measure_run(folder: Path, step: str, workers: int, dates: int) -> float:
    """Seconds to plan, record and execute a run of ``dates`` dates of ``step`` in this process."""
    app = App(make_workspace(folder, step, dates))
    assert app.store is not None  # creating the schema is start-up, not counted
    try:
        started = time.perf_counter()
        request = RunRequest(processors=[], workers=workers)
        run = app.submit(request, app.plan(request))
        outcome = app.execute(run.id)
        wall = time.perf_counter() - started
    finally:
        app.close()
    if outcome.status != "succeeded" or outcome.counts["succeeded"] != dates:
        raise SystemExit(f"{step} run did not succeed: {outcome.status} {dict(outcome.counts)}")
    return wall


def machine() -> str:
    """CPUs, CPU model, Python and SQLite versions, the load: what the figures depend on."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs, {model}; Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; "
        f"load average {load:.1f}"
    )


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return counts


def measure(
    dates: int, worker_counts: list[int], repeat: int, tmp: Path
) -> tuple[float, dict[int, float], list[Measure]]:
    """(SQLite baseline seconds, spawn seconds by threads, the runs), each the best of ``repeat``.

    Baselines and runs are interleaved so that a slow spell of a noisy machine hits both.
    """
    baseline: list[float] = []
    spawn: dict[int, list[float]] = {workers: [] for workers in worker_counts}
    walls: dict[tuple[str, int], list[float]] = {(step, w): [] for step in STEPS for w in worker_counts}
    for round_ in range(repeat):
        baseline.append(sqlite_baseline(tmp / f"baseline-{dates}-{round_}.db", dates))
        for workers in worker_counts:
            spawn[workers].append(spawn_baseline(dates, workers))
        for step, workers in walls:
            folder = tmp / f"{dates}-{round_}-{step.split()[0]}-{workers}"
            walls[step, workers].append(measure_run(folder, step, workers, dates))
    best_spawn = {workers: min(times) for workers, times in spawn.items()}
    measures = [
        Measure(step, workers, min(times), best_spawn[workers] if step.startswith("command") else 0.0, dates)
        for (step, workers), times in walls.items()
    ]
    return min(baseline), best_spawn, measures


def report(dates: int, baseline: float, spawn: dict[int, float], measures: list[Measure]) -> None:
    """Print the baselines and one row per step kind and worker count."""
    baseline_ms = baseline / dates * 1000
    print(f"\n{dates:,} dates")
    print(
        f"  baseline: plain loop writing one SQLite row per date (one commit each): {baseline_ms:.3f} ms/date"
    )
    for workers, seconds in spawn.items():
        print(
            f'  step time of command "true": spawning `true` in a plain loop on {workers} thread(s): '
            f"{seconds / dates * 1000:.3f} ms/date"
        )
    header = (
        f"  {'step':<16}{'workers':>8}{'wall s':>9}{'tasks/s':>10}{'step ms/date':>14}"
        f"{'controller ms/date':>20}{'x baseline':>12}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for m in measures:
        cost = m.controller_ms_per_date
        print(
            f"  {m.step:<16}{m.workers:>8}{m.wall_seconds:>9.2f}{m.tasks_per_second:>10.0f}"
            f"{m.step_seconds / dates * 1000:>14.3f}{cost:>20.3f}{cost / baseline_ms:>12.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The controller's own cost per date (see bench/README.md).")
    parser.add_argument(
        "--dates", type=parse_counts, default=[1000], metavar="N[,N...]",
        help="dates per run; several (e.g. 1000,10000) to compare in one go (default 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=parse_counts, default=[1, 2], metavar="W[,W...]",
        help="worker counts to measure (default 1,2)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds per measurement; the best is kept (default 3)"
    )
    args = parser.parse_args(argv)

    print("runbook controller overhead: the run's wall time minus the step's own time, per date")
    print(f"machine: {machine()}")
    print("state store: SQLite file (WAL, synchronous=NORMAL); best of "
          f"{args.repeat} round(s), baselines interleaved with the runs")  # fmt: skip
    worst: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp:
        folder = Path(tmp)
        measure_run(folder / "warm-up", "python no-op", 1, 200)  # imports, caches, CPU clocks
        for dates in args.dates:
            baseline, spawn, measures = measure(dates, args.workers, max(args.repeat, 1), folder)
            report(dates, baseline, spawn, measures)
            worst[dates] = max(m.controller_ms_per_date for m in measures)
    print()
    for dates, cost in worst.items():
        verdict = "within" if cost <= TARGET_MS_PER_DATE else "ABOVE"
        print(f"worst controller cost at {dates:,} dates: {cost:.3f} ms/date, {verdict} the target of "
              f"{TARGET_MS_PER_DATE:g} ms/date")  # fmt: skip
    if len(worst) > 1:
        first, last = min(worst), max(worst)
        print(f"growth from {first:,} to {last:,} dates: x{worst[last] / worst[first]:.2f} (worst case)")
    return 0 if max(worst.values()) <= TARGET_MS_PER_DATE else 1


if __name__ == "__main__":
    sys.exit(main())
