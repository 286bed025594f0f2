"""Several sessions and machines on one backfill, with real processes on SQLite and PostgreSQL.

Every step is tests/ledger_step.py: it records each execution in a ledger and holds a per-date
``flock`` while it runs, so two executions of one date at the same time leave an ``overlap`` line
whatever happens to the processes. Machines are simulated with distinct ``RUNBOOK_HOST`` values.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import (
    LEDGER_STEP,
    ledger_command,
    ledger_spans,
    peak_concurrency,
    process_alive,
    read_ledger,
    stop_leftovers,
    wait_for,
)

DATES = ("--start", "2024-01-01", "--end", "2024-01-06")


def config(ledger: Path, *, pool: int | None = None, check: bool = False) -> str:
    step = ledger_command(ledger)
    pool_lines = f"pools:\n  warehouse: {pool}\n" if pool else ""
    pool_key = "    pool: warehouse\n" if pool else ""
    check_lines = (
        "    checks:\n"
        "      - name: always_passes\n"
        "        query: SELECT 1 AS ok\n"
        '        expect: ["ok == 1"]\n'
        "        severity: block\n"
        if check
        else ""
    )
    return (
        f"{pool_lines}processors:\n"
        f"  a:\n    command: {step}\n{pool_key}{check_lines}"
        f"  b:\n    needs: [a]\n    command: {step}\n{pool_key}"
    )


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that points runbook at the store under test."""
    if request.param == "postgres":
        return {"RUNBOOK_DATABASE_URL": request.getfixturevalue("pg_url")}
    return {}


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def start(ws: Any, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A runbook command started in the background (not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", *args], cwd=ws.root, env={**ws.env, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def shown(ws: Any, run_id: int) -> dict[str, Any]:
    document: dict[str, Any] = ws.cli("show", str(run_id), "--json", "--tasks", check=True).json()
    return document


def assert_ledger_sound(
    ledger: Path, expected: set[tuple[str, str]]
) -> list[tuple[str, str, float, float | None]]:
    """No date ever ran twice at once, and every expected date ended well at least once."""
    entries = read_ledger(ledger)
    assert not [e for e in entries if e.kind == "overlap"], "a date ran twice at the same time"
    ended = {(e.processor, e.date) for e in entries if e.kind == "end"}
    assert ended >= expected, f"never built: {sorted(expected - ended)}"
    return ledger_spans(entries)


def every_date(processors: tuple[str, ...] = ("a", "b")) -> set[tuple[str, str]]:
    return {(p, f"2024-01-0{d}") for p in processors for d in range(1, 7)}


def test_two_resumes_at_once_start_one_controller(make_workspace: Any, store_env: dict[str, str]) -> None:
    """Three rounds: the owner is killed with -9, then two resumes race; one takes the run, the
    other exits 5 naming the owner, and the next round kills the survivor."""
    ws = make_workspace("", extra_env=store_env)
    ledger = ws.root / "ledger.txt"
    ws.write(config(ledger))
    env = {"LEDGER_SLEEP": "0.6"}
    first = ws.runbook("run", *DATES, "--workers", "2", "--detach", "--json", check=True, env=env).json()
    run_id, owner = first["run_id"], first["pid"]
    epochs = [shown(ws, run_id)["run"]["epoch"]]
    for _ in range(3):
        wait_for(
            lambda: shown(ws, run_id)["run"]["progress"]["running"] > 0, timeout=60, what="steps running"
        )
        os.kill(owner, signal.SIGKILL)
        wait_for(lambda pid=owner: not process_alive(pid), what="owner gone")
        racers = [start(ws, "resume", str(run_id), "--detach", "--json", env=env) for _ in range(2)]
        results = [finish(proc) for proc in racers]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 5], results
        (busy,) = [err for code, _, err in results if code == 5]
        assert len(busy.strip().splitlines()) == 1 and "Traceback" not in busy
        assert f"run {run_id} " in busy and "PID " in busy and " on " in busy, busy  # names the owner
        (winner,) = [out for code, out, _ in results if code == 0]
        (resumed,) = json.loads(winner)["resumed"]
        owner = resumed["pid"]
        epochs.append(shown(ws, run_id)["run"]["epoch"])
    wait_for(lambda: shown(ws, run_id)["run"]["status"] == "succeeded", timeout=120, what="run succeeded")
    detail = shown(ws, run_id)
    assert {t["status"] for t in detail["tasks"]} == {"succeeded"}
    assert epochs == sorted(set(epochs)), epochs  # each taking of the run moved the fencing token on
    assert_ledger_sound(ledger, every_date())


def test_of_two_overlapping_runs_started_together_exactly_one_starts(
    make_workspace: Any, store_env: dict[str, str]
) -> None:
    ws = make_workspace("", extra_env=store_env)
    ledger = ws.root / "ledger.txt"
    ws.write(config(ledger))
    env = {"LEDGER_SLEEP": "0.6"}
    admitted = 0
    for round_ in range(4):
        racers = [
            start(ws, "run", "--start", "2024-01-01", "--end", "2024-01-03", "--no-resume", "--detach", "--json",
                  env=env),
            start(ws, "run", "--start", "2024-01-02", "--end", "2024-01-04", "--no-resume", "--detach", "--json",
                  env=env),
        ]  # fmt: skip
        results = [finish(proc) for proc in racers]
        if [code for code, _, _ in results] == [0, 0]:
            # Both admitted is right only if they never overlapped in time: on a loaded machine
            # one process can start after the other's run already ended.
            first, second = sorted(
                (shown(ws, json.loads(out)["run_id"])["run"] for _, out, _ in results),
                key=lambda run: run["id"],
            )
            wait_for(lambda n=second["id"]: shown(ws, n)["run"]["status"] == "succeeded", timeout=60,
                     what="run done")  # fmt: skip
            assert first["finished_at"] and first["finished_at"] <= second["created_at"], (round_, results)
            admitted += 2
            continue
        assert sorted(code for code, _, _ in results) == [0, 2], (round_, results)
        (refusal,) = [err for code, _, err in results if code == 2]
        assert "already covers" in refusal and len(refusal.strip().splitlines()) == 1, refusal
        (started,) = [out for code, out, _ in results if code == 0]
        run_id = json.loads(started)["run_id"]
        history = ws.cli("history", "--json", check=True).json()["runs"]
        assert len(history) == admitted + 1, "a refused run records nothing"
        admitted += 1
        wait_for(lambda n=run_id: shown(ws, n)["run"]["status"] == "succeeded", timeout=60, what="run done")
    assert not [e for e in read_ledger(ledger) if e.kind == "overlap"]


def test_workers_on_other_machines_share_a_run_and_its_pool(
    make_workspace: Any, store_env: dict[str, str]
) -> None:
    ws = make_workspace("", extra_env=store_env)
    ledger = ws.root / "ledger.txt"
    ws.write(config(ledger, pool=2))
    env = {"LEDGER_SLEEP": "0.4"}
    run = ws.runbook("run", *DATES, "--workers", "1", "--detach", "--json", check=True,
                     env={**env, "RUNBOOK_HOST": "machine-a"}).json()  # fmt: skip
    workers = [
        start(ws, "worker", "--run", str(run["run_id"]), "--threads", "3", "--idle-exit", "3", "--json",
              env={**env, "RUNBOOK_HOST": host})
        for host in ("machine-b", "machine-c")
    ]  # fmt: skip
    reports = [finish(proc) for proc in workers]
    for code, out, err in reports:
        assert code == 0, (out, err)
    wait_for(lambda: shown(ws, run["run_id"])["run"]["status"] == "succeeded", timeout=60, what="run done")
    detail = shown(ws, run["run_id"])
    spans = assert_ledger_sound(ledger, every_date())
    # Three processes with up to five threads between them never ran more than the pool's 2.
    assert peak_concurrency(spans) == 2
    hosts = {e.host for e in read_ledger(ledger) if e.kind == "start"}
    assert len(hosts) >= 2, hosts
    processes = detail["run"]["processes"]
    assert {p["kind"] for p in processes} == {"controller", "worker"}
    assert {p["host"] for p in processes} == {"machine-a", "machine-b", "machine-c"}
    done = {p["id"]: p["tasks_done"] for p in processes}
    assert sum(done.values()) == len(detail["tasks"]) == 12
    assert Counter(t["worker"] for t in detail["tasks"]) == Counter({k: v for k, v in done.items() if v})
    for _, out, _ in reports:
        assert json.loads(out)["done"] == done[json.loads(out)["worker"]]


def test_a_killed_workers_tasks_return_when_its_lease_runs_out(
    make_workspace: Any, store_env: dict[str, str]
) -> None:
    # The lease is the same for every process of the store, readers included.
    ws = make_workspace("", extra_env={**store_env, "RUNBOOK_LEASE_SECONDS": "2"})
    ledger = ws.root / "ledger.txt"
    ws.write(config(ledger))
    run = ws.runbook("run", *DATES, "--workers", "1", "--detach", "--json", check=True,
                     env={"LEDGER_SLEEP": "1", "RUNBOOK_HOST": "machine-a"}).json()  # fmt: skip
    worker = start(ws, "worker", "--run", str(run["run_id"]), "--threads", "2",
                   env={"LEDGER_SLEEP": "60", "RUNBOOK_HOST": "machine-b"})  # fmt: skip

    def held_by_worker() -> list[dict[str, Any]]:
        return [
            t for t in shown(ws, run["run_id"])["tasks"]
            if t["status"] == "running" and (t["worker"] or "").startswith("machine-b")
        ]  # fmt: skip

    def started_by_worker() -> set[tuple[str, str]]:
        return {
            (e.processor, e.date) for e in read_ledger(ledger) if e.kind == "start" and e.host == "machine-b"
        }

    wait_for(lambda: len(started_by_worker()) == 2, timeout=60, what="two steps started by the worker")
    held = held_by_worker()
    assert {(t["processor"], t["date"]) for t in held} == started_by_worker()
    worker.kill()  # kill -9: no hand-back, its leases just stop being renewed
    worker.communicate(timeout=30)
    wait_for(lambda: shown(ws, run["run_id"])["run"]["status"] == "succeeded", timeout=90, what="run done")
    spans = assert_ledger_sound(ledger, every_date())
    for task in held:
        runs = [s for s in spans if (s[0], s[1]) == (task["processor"], task["date"])]
        assert len(runs) == 2 and runs[0][3] is None, runs  # the killed attempt never ended
    detail = shown(ws, run["run_id"])
    (gone,) = [p for p in detail["run"]["processes"] if p["host"] == "machine-b"]
    assert gone["alive"] is False
    # Taking over a dead holder's task does not spend one of its tries.
    assert all(t["attempt"] <= t["max_attempts"] for t in detail["tasks"])


def test_a_gate_is_judged_once_whoever_finishes_its_processor(
    make_workspace: Any, store_env: dict[str, str]
) -> None:
    ws = make_workspace("", extra_env=store_env)
    ledger = ws.root / "ledger.txt"
    ws.write(config(ledger, check=True))
    env = {"LEDGER_SLEEP": "0.3"}
    run = ws.runbook("run", *DATES, "--workers", "1", "--detach", "--json", check=True, env=env).json()
    workers = [
        start(ws, "worker", "--run", str(run["run_id"]), "--threads", "2", "--idle-exit", "3",
              env={**env, "RUNBOOK_HOST": host})
        for host in ("machine-b", "machine-c")
    ]  # fmt: skip
    for proc in workers:
        assert finish(proc)[0] == 0
    wait_for(lambda: shown(ws, run["run_id"])["run"]["status"] == "succeeded", timeout=60, what="run done")
    detail = shown(ws, run["run_id"])
    assert [c["check"] for c in detail["checks"]] == ["always_passes"]
    history = ws.cli("checks", "history", "--json", check=True).json()
    (check,) = history["checks"]
    assert [r["run_id"] for r in check["results"]] == [run["run_id"]], check
    spans = assert_ledger_sound(ledger, every_date())
    # Every date of b started after the gate's processor a had finished all of its dates.
    last_a = max(end for p, _, _, end in spans if p == "a" and end is not None)
    assert min(begin for p, _, begin, _ in spans if p == "b") >= last_a


def test_a_worker_whose_config_differs_refuses_those_processors(
    make_workspace: Any, store_env: dict[str, str], tmp_path: Path
) -> None:
    ws = make_workspace("", extra_env=store_env)
    ledger = ws.root / "ledger.txt"
    ws.write(config(ledger))
    shared = store_env or {"RUNBOOK_DATABASE_URL": f"sqlite:///{ws.root / 'state' / 'runbook.db'}"}
    run = ws.runbook("run", *DATES, "--workers", "1", "--detach", "--json", check=True,
                     env={**shared, "LEDGER_SLEEP": "0.4"}).json()  # fmt: skip
    other = make_workspace("", name="elsewhere")
    other.write(
        config(ledger).replace("  b:\n    needs: [a]\n", "  b:\n    needs: [a]\n    version: edited\n")
    )
    code, out, err = finish(
        start(
            other,
            "worker",
            "--run",
            str(run["run_id"]),
            "--idle-exit",
            "3",
            "--json",
            env={**shared, "LEDGER_SLEEP": "0.4", "RUNBOOK_HOST": "machine-b"},
        )  # fmt: skip
    )
    assert code == 0, err
    report = json.loads(out)
    (refused,) = report["refused"][str(run["run_id"])]
    assert refused.startswith("b (code version here edited") and "recorded" in refused
    assert "not claiming b" in err
    wait_for(lambda: shown(ws, run["run_id"])["run"]["status"] == "succeeded", timeout=60, what="run done")
    detail = shown(ws, run["run_id"])
    by_worker = {t["worker"] for t in detail["tasks"] if t["processor"] == "b"}
    assert not any(w.startswith("machine-b") for w in by_worker)
    (elsewhere,) = [p for p in detail["run"]["processes"] if p["host"] == "machine-b"]
    assert "b (code version here edited" in elsewhere["note"]


ESCAPING_STEP = """\
import os, subprocess, sys
ledger, ledger_step, processor, date = sys.argv[1:5]
marker = os.path.join(os.path.dirname(ledger), f"escaped-{processor}-{date}")
escapes = os.environ.get("ESCAPE_ON_HOST") in (None, os.environ.get("RUNBOOK_HOST"))
if escapes and not os.path.exists(marker):
    # The first execution leaves a process of its own session behind, outside the step's group,
    # holding the date's ledger lock for a long time; then it hangs until its controller dies.
    child = subprocess.Popen([sys.executable, ledger_step, ledger, processor, date, date],
                             env={**os.environ, "LEDGER_SLEEP": "60"}, start_new_session=True)
    with open(marker, "w") as out:
        out.write(str(child.pid))
    os.system("sleep 600")
os.execv(sys.executable, [sys.executable, ledger_step, ledger, processor, date, date])
"""


def test_a_step_process_that_outlived_its_killed_controller_is_ended_before_its_date_runs_again(
    make_workspace: Any, store_env: dict[str, str]
) -> None:
    """A process a step started in a session of its own is not in the step's process group and
    does not die with the controller: the resume that takes the run over finds it by the token it
    inherited and ends it, so the date never runs twice at the same time."""
    ws = make_workspace("", extra_env=store_env)
    ledger = ws.root / "ledger.txt"
    script = ws.root / "escaping_step.py"
    script.write_text(ESCAPING_STEP, encoding="utf-8")
    command = f'["{sys.executable}", "{script}", "{ledger}", "{LEDGER_STEP}", "{{{{ processor }}}}", "{{{{ start }}}}"]'
    ws.write(f"processors:\n  a:\n    command: {command}\n")
    first = ws.runbook(
        "run", "--start", "2024-01-01", "--end", "2024-01-01", "--detach", "--json", check=True
    ).json()
    run_id, owner = first["run_id"], first["pid"]
    marker = ws.root / "escaped-a-2024-01-01"
    wait_for(lambda: marker.exists() and marker.read_text(), what="the step to leave a process behind")
    wait_for(
        lambda: any(e.kind == "start" for e in read_ledger(ledger)), what="the escaped process holds the date"
    )
    escaped = int(marker.read_text())
    os.kill(owner, signal.SIGKILL)
    wait_for(lambda: not process_alive(owner), what="owner gone")
    assert process_alive(escaped), "the escaped process outlives the controller"

    resumed = ws.runbook("resume", str(run_id), "--json")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    assert not process_alive(escaped), "resume ended the process the dead controller's step left"
    assert shown(ws, run_id)["run"]["status"] == "succeeded"
    entries = read_ledger(ledger)
    assert not [e for e in entries if e.kind == "overlap"], "a date ran twice at the same time"
    assert [e.kind for e in entries if e.pid != escaped] == ["start", "end"]
    log = (ws.root / shown(ws, run_id)["run"]["log_path"]).read_text(encoding="utf-8")
    assert "ended 1 step process(es) of this run left by a controller that died" in log, log
    kinds = [e["kind"] for e in shown(ws, run_id)["events"]]
    assert kinds.count("strays_ended") == 1, kinds


def test_a_step_process_left_by_a_killed_worker_is_ended_by_whoever_takes_its_task(
    make_workspace: Any, store_env: dict[str, str]
) -> None:
    """The worker's step leaves a process of its own session holding the date; the worker is
    killed with -9 and its lease runs out; the controller that claims the task ends that process
    (found by its token: no PID of it was ever recorded) before the date runs again."""
    ws = make_workspace("", extra_env={**store_env, "RUNBOOK_LEASE_SECONDS": "2"})
    ledger = ws.root / "ledger.txt"
    script = ws.root / "escaping_step.py"
    script.write_text(ESCAPING_STEP, encoding="utf-8")
    command = f'["{sys.executable}", "{script}", "{ledger}", "{LEDGER_STEP}", "{{{{ processor }}}}", "{{{{ start }}}}"]'
    ws.write(f"processors:\n  a:\n    command: {command}\n")
    env = {"ESCAPE_ON_HOST": "machine-b", "LEDGER_SLEEP": "0.5"}
    worker = start(ws, "worker", "--threads", "1", env={**env, "RUNBOOK_HOST": "machine-b"})
    run = ws.runbook("run", *DATES, "--workers", "1", "--detach", "--json", check=True,
                     env={**env, "RUNBOOK_HOST": "machine-a"}).json()  # fmt: skip
    wait_for(
        lambda: list(ws.root.glob("escaped-a-*")), timeout=60, what="the worker's step to leave a process"
    )
    (marker,) = ws.root.glob("escaped-a-*")
    wait_for(lambda: marker.read_text(), what="the escaped process's PID")
    escaped = int(marker.read_text())
    worker.kill()  # kill -9: its step dies with it, the escaped process does not
    worker.communicate(timeout=30)
    assert process_alive(escaped)
    wait_for(lambda: shown(ws, run["run_id"])["run"]["status"] == "succeeded", timeout=90, what="run done")
    assert not process_alive(escaped), "the claimant ended what the dead worker's step left"
    assert_ledger_sound(ledger, {("a", f"2024-01-0{d}") for d in range(1, 7)})
    log = (ws.root / shown(ws, run["run_id"])["run"]["log_path"]).read_text(encoding="utf-8")
    # The escaped process, and what the step left in its own group (its shell and sleep).
    assert re.search(
        r"ended \d+ step process\(es\) of task\(s\) taken over from a holder whose lease", log
    ), log
