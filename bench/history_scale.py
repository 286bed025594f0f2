"""History at scale: build a state store with 500 runs and 1,000,000 task rows, then time the
commands that read history (``history``, ``coverage``, ``handoff``).

The store looks like a long-lived workspace: 10 processors in three phases over four years of
dates, runs of 2-4 processors over one to two years each (every date of a run is a task row,
skipped ones included, as the planner records them), about 70 reruns per processor and date,
code versions that change every 100 runs, a few percent of failed dates, check results, events,
20 numbered sessions with notes, and in the open session a running, an interrupted and a
finished run.

    .venv/bin/python bench/history_scale.py                # build in a temp folder, time, remove
    .venv/bin/python bench/history_scale.py --keep /tmp/h  # keep (and reuse) the workspace
    .venv/bin/python bench/history_scale.py --cli          # also time the real CLI processes

Times are the median of ``--repeat`` calls in this process (library: the store queries and the
rendering the CLI runs); ``--cli`` adds the wall time of ``runbook ...`` subprocesses, which
includes starting Python, importing runbook and its libraries and opening the store: the cost of
``runbook db current``, shown beside them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runbook.app import App  # noqa: E402
from runbook.snapshots import to_data  # noqa: E402
from runbook.state.connect import Json  # noqa: E402
from runbook.state.store import Store  # noqa: E402
from runbook.workspace import Workspace  # noqa: E402

EVENT_SQL = (
    "INSERT INTO event (run_id, at, kind, processor, date, message, data) "
    "VALUES (:run_id, :at, :kind, :processor, :date, :message, :data)"
)
CHECK_SQL = (
    "INSERT INTO check_result (run_id, processor, check_name, severity, passed, start_date, end_date, metrics, "
    "conditions, query, params, error, at) VALUES (:run_id, :processor, :check_name, :severity, :passed, "
    ":start_date, :end_date, :metrics, :conditions, :query, :params, NULL, :at)"
)


def event(run_id: int, at: dt.datetime, kind: str, message: str, processor: str | None = None,
          date: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"run_id": run_id, "at": at, "kind": kind, "processor": processor, "date": date, "message": message,
            "data": Json({})}  # fmt: skip


PROCESSORS = {  # name: (phase, needs)
    "team_offense": ("3", []),
    "team_defense": ("3", ["team_offense"]),
    "player_game": ("3", ["team_offense"]),
    "upcoming_player": ("3", ["player_game"]),
    "upcoming_team": ("3", ["team_offense"]),
    "zone_team": ("4", ["team_defense"]),
    "zone_player": ("4", ["player_game"]),
    "composite": ("4", ["zone_team", "zone_player", "upcoming_player"]),
    "daily_cache": ("4", ["composite"]),
    "feature_store": ("5", ["daily_cache"]),
}
FIRST_DAY = dt.date(2022, 1, 1)
DAYS = 1461
CHECKED = ("player_game", "composite", "feature_store")
BASE_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def config_text(runs: int) -> str:
    lines = [
        "name: history-bench",
        "calendar:",
        f"  start: {FIRST_DAY}",
        f"  end: {FIRST_DAY + dt.timedelta(days=DAYS - 1)}",
        "  off_days: [2022-11-24, 2022-12-24, 2023-11-23, 2023-12-24, 2024-11-28, 2024-12-24, 2025-11-27]",
        "processors:",
    ]
    for name, (phase, needs) in PROCESSORS.items():
        lines += [
            f"  {name}:",
            f'    phase: "{phase}"',
            '    command: "true"',
            f"    version: v{_version(runs - 1, runs)}",
        ]
        if needs:
            lines.append(f"    needs: [{', '.join(needs)}]")
        if name in CHECKED:
            lines += [
                "    checks:",
                "      - name: row_coverage",
                "        query: SELECT COUNT(*) AS n FROM t WHERE d BETWEEN @start AND @end",
                '        expect: ["n >= 100"]',
            ]
    return "\n".join(lines) + "\n"


def _version(index: int, runs: int) -> int:
    return 1 + index * 5 // max(runs, 1)


def build(root: Path, runs: int, tasks: int, seed: int = 7) -> Store:
    """Write runbook.yaml and fill state/runbook.db; return the open store."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "runbook.yaml").write_text(config_text(runs), encoding="utf-8")
    store = Store.open(f"sqlite:///{root / 'state' / 'runbook.db'}")
    rng = random.Random(seed)
    names = list(PROCESSORS)
    off = {dt.date(2022, 11, 24), dt.date(2022, 12, 24), dt.date(2023, 11, 23), dt.date(2023, 12, 24)}
    per_run = max(tasks // runs, 1)
    sessions = 20
    for number in range(1, sessions + 1):
        started = BASE_TIME + dt.timedelta(hours=3 * runs * (number - 1) / sessions)
        ended = None if number == sessions else started + dt.timedelta(hours=3 * runs / sessions - 1)
        store.db.execute(
            "INSERT INTO work_session (title, started_at, ended_at) VALUES (:title, :started, :ended)",
            {"title": f"bench session {number}", "started": started, "ended": ended},
        )
    for index in range(runs):
        width = rng.randint(2, 4)
        first = rng.randint(0, len(names) - width)
        chosen = names[first : first + width]
        length = min(per_run // width, DAYS)
        offset = rng.randint(0, DAYS - length)
        start = FIRST_DAY + dt.timedelta(days=offset)
        created = BASE_TIME + dt.timedelta(hours=3 * index)
        last = index == runs - 1
        status = "running" if last else "interrupted" if index == runs - 2 else "succeeded"
        session_id = min(index * sessions // runs + 1, sessions)
        run = store.create_run(
            processors=chosen,
            start_date=start.isoformat(),
            end_date=(start + dt.timedelta(days=length - 1)).isoformat(),
            versions={name: f"v{_version(index, runs)}" for name in chosen},
            workers=rng.choice([1, 2, 4]),
            status=status,
            session_id=session_id,
            log_path=f"state/logs/run-{index + 1}.log",
            command_line=f"runbook run {' '.join(chosen)} --start {start} --detach",
        )
        assert run.id is not None
        rows, events, moment = [], [], created
        for seq_base, name in enumerate(chosen):
            for day_index in range(length):
                day = start + dt.timedelta(days=day_index)
                roll = rng.random()
                row: dict[str, Any] = {
                    "processor": name, "date": day.isoformat(), "end_date": day.isoformat(),
                    "seq": day_index * width + seq_base, "code_version": f"v{_version(index, runs)}",
                    "status": "pending", "skip_reason": None, "attempt": 0, "exit_code": None, "error_tail": None,
                    "rows_affected": None, "started_at": None, "finished_at": None, "duration_seconds": None,
                }  # fmt: skip
                if day in off:
                    row.update(status="skipped", skip_reason="off_day", code_version=None)
                elif last and day_index > length // 3:
                    row.update(status="pending")
                elif roll < 0.10:
                    row.update(status="skipped", skip_reason="already_done", code_version=None)
                elif roll < 0.12:
                    row.update(
                        status="failed",
                        attempt=2,
                        exit_code=1,
                        error_tail="Traceback ...\nValueError: bad row",
                    )
                    events.append(event(run.id, moment, "task_failed", f"{name} {day} failed after 2 attempt(s): "
                                        "ValueError: bad row", name, row["date"]))  # fmt: skip
                else:
                    row.update(status="succeeded", attempt=1, exit_code=0, rows_affected=rng.randint(50, 500))
                if row["status"] in ("succeeded", "failed"):
                    row.update(
                        started_at=moment, finished_at=moment + dt.timedelta(seconds=3), duration_seconds=3.0
                    )
                    moment += dt.timedelta(seconds=1)
                rows.append(row)
        store.add_tasks(run.id, rows)
        finished = None if status == "running" else moment
        heartbeat = dt.datetime.now(dt.UTC) if status == "running" else moment
        store.update_run(run.id, created_at=created, started_at=created, finished_at=finished, heartbeat_at=heartbeat,
                         pid=os.getpid() if status == "running" else None, host=socket.gethostname(),
                         controller_id="bench" if status == "running" else None)  # fmt: skip
        events += [
            event(run.id, created, "run_created", run.command_line or ""),
            event(run.id, created, "run_started", "controller took the run"),
        ]
        if finished is not None:
            events.append(event(run.id, finished, f"run_{status}", "done"))
        checks = [
            {"run_id": run.id, "processor": name, "check_name": "row_coverage", "severity": "block",
             "passed": rng.random() > 0.05, "start_date": run.start_date, "end_date": run.end_date,
             "metrics": Json({"n": 1234}),
             "conditions": Json([{"expr": "n >= 100", "left": 1234, "op": ">=", "right": 100, "passed": True}]),
             "query": "SELECT COUNT(*) AS n FROM t WHERE d BETWEEN @start AND @end",
             "params": Json({"start": run.start_date, "end": run.end_date}), "at": moment}
            for name in chosen if name in CHECKED
        ]  # fmt: skip
        with store.transaction() as db:
            db.executemany(EVENT_SQL, events)
            db.executemany(CHECK_SQL, checks)
            if index % 25 == 0:
                store.add_note(session_id, "issue", f"run {run.id}: watch the rates", created)
    return store


def _median_ms(call: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return round(statistics.median(times) * 1000, 1)


def measure(root: Path, repeat: int) -> dict[str, float]:
    """Library time of the reading use cases, on the app the CLI uses (its read connection)."""
    app = App(Workspace.load(str(root / "runbook.yaml")))
    busiest = "player_game"
    try:
        return {
            "status (JSON data)": _median_ms(lambda: to_data(app.status()), repeat),
            "history (50 runs, JSON data)": _median_ms(lambda: to_data(app.history(limit=50)), repeat),
            "show (newest run, JSON data)": _median_ms(
                lambda: to_data(app.run_detail(app.status()[0].id)), repeat
            ),
            f"coverage {busiest} (4 years)": _median_ms(
                lambda: to_data(app.coverage(busiest, None, None)), repeat
            ),
            "handoff (Markdown)": _median_ms(lambda: app.handoff(out="-"), repeat),
            "handoff (brief)": _median_ms(lambda: app.handoff(format="brief"), repeat),
        }
    finally:
        app.close()


def measure_cli(root: Path, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    commands = {
        "runbook history --json": ["history", "--json"],
        "runbook coverage player_game --json": ["coverage", "player_game", "--json"],
        "runbook handoff --out -": ["handoff", "--out", "-"],
        "runbook db current --json (start-up only)": ["db", "current", "--json"],
    }
    found = {}
    for label, args in commands.items():
        argv = [sys.executable, "-m", "runbook", "--config", str(root / "runbook.yaml"), *args]

        def call(argv: list[str] = argv) -> None:
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, cwd=root)

        found[label] = _median_ms(call, repeat)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", metavar="DIR", help="Build in DIR and keep it; reuse it if it is already built."
    )
    parser.add_argument("--cli", action="store_true", help="Also time the real CLI in subprocesses.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="runbook-history-"))
    try:
        begin = time.perf_counter()
        if not (root / "state" / "runbook.db").exists():
            build(root, args.runs, args.tasks).close()
        built = time.perf_counter() - begin
        store = Store.open(f"sqlite:///{root / 'state' / 'runbook.db'}")
        counts = {t: store.db.scalar(f"SELECT COUNT(*) FROM {t}") for t in ("run", "task", "event")}
        store.close()
        figures = {"library_ms": measure(root, args.repeat)}
        if args.cli:
            figures["cli_ms"] = measure_cli(root, args.repeat)
        report = {"store": counts, "build_seconds": round(built, 1), **figures}
        if args.json:
            print(json.dumps(report, indent=2))
            return
        print(
            f"store: {counts['run']:,} runs, {counts['task']:,} tasks, {counts['event']:,} events (built in {built:.0f}s)"
        )
        for section, values in figures.items():
            print(f"{section.replace('_ms', '')} (median of {args.repeat}):")
            for label, ms in values.items():
                print(f"  {label:<40} {ms:>8.1f} ms")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
