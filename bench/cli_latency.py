"""CLI latency: the wall time of whole ``runbook`` processes, beside ``python -c pass``.

An agent calls the CLI dozens of times a session, so what counts is the whole process: starting
Python, importing runbook, reading runbook.yaml, opening the state store and answering. For each
command this prints the median of ``--repeat`` runs and its ratio to ``python -c pass`` measured in
the same rounds (commands are interleaved, so a slow spell hits all of them), on two workspaces:

- small: a workspace with one finished run of three processors over a month;
- large: the store of ``bench/history_scale.py`` (500 runs, 1,000,000 task rows).

Targets (2-core machine): status, status --json, history --json, show N and coverage P at most
0.25 s on the small workspace and 0.5 s on the large one; handoff (markdown and brief) at most
0.6 s on the large one.

    .venv/bin/python bench/cli_latency.py                    # builds both in a temp folder
    .venv/bin/python bench/cli_latency.py --keep /tmp/lat    # keep (and reuse) the workspaces
    .venv/bin/python bench/cli_latency.py --tasks 100000     # a smaller large store, quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL_YAML = """\
name: latency-small
calendar: {start: 2024-01-01, end: 2024-01-31, off_weekdays: [sun]}
processors:
  extract: {phase: "3", command: "true"}
  transform: {phase: "3", command: "true", needs: [extract]}
  publish: {phase: "4", command: "true", needs: [transform]}
"""
SMALL_TARGET, LARGE_TARGET, HANDOFF_TARGET = 0.25, 0.5, 0.6


def runbook(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runbook", "--config", str(root / "runbook.yaml"), *args]


def build_small(root: Path) -> None:
    if (root / "state" / "runbook.db").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    (root / "runbook.yaml").write_text(SMALL_YAML, encoding="utf-8")
    subprocess.run(runbook(root, "run"), check=True, stdout=subprocess.DEVNULL, env=_env(), cwd=root)


def build_large(root: Path, tasks: int) -> None:
    if (root / "state" / "runbook.db").exists():
        return
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "history_scale.py"), "--tasks", str(tasks), "--repeat", "1",
         "--keep", str(root), "--json"],
        check=True, stdout=subprocess.DEVNULL, env=_env(),
    )  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}


def commands(small: Path, large: Path) -> dict[str, tuple[list[str], Path, float | None]]:
    """label: (argv, folder to run in, target seconds)."""
    found: dict[str, tuple[list[str], Path, float | None]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], small, None)
    }
    for label, root, target in (("small", small, SMALL_TARGET), ("large", large, LARGE_TARGET)):
        newest = _newest_run(root)
        for args in (
            ["status"],
            ["status", "--json"],
            ["history", "--json"],
            ["show", newest],
            ["coverage", _processor(root)],
        ):
            found[f"{label}: runbook {' '.join(args)}"] = (runbook(root, *args), root, target)
    for args in (["handoff", "--out", "-"], ["handoff", "--format", "brief"]):
        found[f"large: runbook {' '.join(args)}"] = (runbook(large, *args), large, HANDOFF_TARGET)
    return found


def _newest_run(root: Path) -> str:
    out = subprocess.run(
        runbook(root, "status", "--json"), check=True, capture_output=True, env=_env(), cwd=root
    )
    return str(json.loads(out.stdout)["runs"][0]["id"])


def _processor(root: Path) -> str:
    return "transform" if "latency-small" in (root / "runbook.yaml").read_text() else "player_game"


def measure(found: dict[str, tuple[list[str], Path, float | None]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {label: [] for label in found}
    env = _env()
    for _ in range(repeat):
        for label, (argv, root, _) in found.items():
            began = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=root)
            times[label].append(time.perf_counter() - began)
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1_000_000, help="Task rows of the large store.")
    parser.add_argument("--keep", metavar="DIR", help="Build in DIR and keep it; reuse it if already built.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="runbook-latency-"))
    try:
        # Measure runbook as installed: with its bytecode compiled (PYTHONDONTWRITEBYTECODE would
        # otherwise make every edited module compile again in every process).
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "runbook")], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        small, large = base / "small", base / "large"
        build_small(small)
        build_large(large, args.tasks)
        found = commands(small, large)
        medians = measure(found, args.repeat)
        baseline = medians["python -c pass"]
        rows = []
        for label, seconds in medians.items():
            target = found[label][2]
            rows.append({"command": label, "seconds": round(seconds, 3), "ratio": round(seconds / baseline, 1),
                         "target": target, "ok": target is None or seconds <= target})  # fmt: skip
        if args.json:
            print(json.dumps({"repeat": args.repeat, "large_tasks": args.tasks, "rows": rows}, indent=2))
        else:
            print(f"median of {args.repeat}, wall time of the whole process (ratio to python -c pass)")
            for row in rows:
                target = f"<= {row['target']:.2f}s {'ok' if row['ok'] else 'OVER'}" if row["target"] else ""
                print(f"  {row['command']:<42} {row['seconds']:>7.3f}s {row['ratio']:>6.1f}x  {target}")
        return 0 if all(row["ok"] for row in rows) else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
