"""BigQuery jobs that survive crashes, throttling and quotas, and what they cost: the real CLI and the
real google-cloud-bigquery client against the emulator, behind the fault-injecting proxy
(tests/bqproxy.py).

What the proxy answers itself, because bqemulator 1.4.0 lacks it (per BigQuery's REST reference):
jobs.cancel, dry-run statistics (``totalBytesProcessed`` of a dry run), the bytes processed and
billed and the slot milliseconds of finished jobs, a 409 for a second jobs.insert of a job id,
and a job held in RUNNING (the emulator runs every query to the end at once). Everything else
(the jobs, their DML, their rows) is the emulator's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bqemu import Emulator, emulator_fixture
from bqproxy import BigQueryProxy, bigquery_proxy
from core_helpers import process_alive, query, tasks, wait_for

from runbook.config import WarehouseConfig
from runbook.errors import QuotaExhausted, TransientWarehouseError, WarehouseError
from runbook.warehouse import JobSpec, job_id_for
from runbook.warehouse.bigquery import BigQueryWarehouse

pytestmark = pytest.mark.bigquery

bqemu = emulator_fixture(project="proj")
GIB = 1024**3


@pytest.fixture
def proxy(bqemu: Emulator) -> Iterator[BigQueryProxy]:
    with bigquery_proxy(bqemu.endpoint) as running:
        yield running


@pytest.fixture
def dataset(bqemu: Emulator) -> Iterator[str]:
    """A dataset of its own with an empty ``daily`` table (one row per date a step wrote)."""
    name = f"ds_{uuid.uuid4().hex[:8]}"
    warehouse = direct(bqemu.endpoint)
    warehouse.execute(f"CREATE SCHEMA `proj.{name}`; CREATE TABLE `proj.{name}.daily` (d DATE, n INT64)")
    yield name
    warehouse.close()


def direct(endpoint: str, **options: Any) -> BigQueryWarehouse:
    config = WarehouseConfig(kind="bigquery", project="proj", api_endpoint=endpoint, **options)
    return BigQueryWarehouse.from_config(config, {}, retry_base_seconds=0.05, poll_seconds=0.05)


def rows_by_date(endpoint: str, dataset: str) -> dict[str, int]:
    warehouse = direct(endpoint)
    try:
        found = warehouse.query(
            f"SELECT CAST(d AS STRING) AS d, COUNT(*) AS n FROM `proj.{dataset}.daily` GROUP BY d"
        )
    finally:
        warehouse.close()
    return {row["d"]: row["n"] for row in found}


def workspace(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, *, pool: int = 2, extra: str = "",
    top: str = "", env: dict[str, str] | None = None,
) -> Any:  # fmt: skip
    return make_workspace(
        f"""
        {top}
        name: bills
        workers: 4
        calendar:
          start: 2024-01-01
          end: 2024-01-08
        warehouse:
          kind: bigquery
          project: proj
          api_endpoint: {proxy.endpoint}
          retry_deadline: 60s
          {extra}
        pools:
          bq: {pool}
        processors:
          load:
            sql: INSERT INTO `proj.{dataset}.daily` (d, n) VALUES (@date, 1)
            pool: bq
        """,
        extra_env=env,
    )


class Child:
    """The real CLI as a child process we can kill -9; its output goes to a file."""

    def __init__(self, ws: Any, *args: str, env: dict[str, str] | None = None) -> None:
        self.output = ws.root / f"child-{uuid.uuid4().hex[:6]}.out"
        with self.output.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runbook", *args], cwd=ws.root, env={**ws.env, **(env or {})},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout)
        return code, self.output.read_text()


def start(ws: Any, *args: str, env: dict[str, str] | None = None) -> Child:
    return Child(ws, *args, env=env)


def update(db: Any, sql: str, params: tuple[Any, ...]) -> None:
    connection = sqlite3.connect(db, timeout=30)
    try:
        connection.execute(sql, params)
        connection.commit()
    finally:
        connection.close()


def events(ws: Any, kind: str) -> list[dict[str, Any]]:
    return query(ws.db, "SELECT * FROM event WHERE kind = ? ORDER BY id", (kind,))


# -- crash-safe jobs ------------------------------------------------------------------------------


def test_kill_9_while_a_job_runs_then_resume_reattaches_without_a_second_insert(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset)
    proxy.hold("INSERT")  # the job stays RUNNING (and writes nothing) until released
    controller = start(ws, "run", "load", "--start", "2024-01-01", "--end", "2024-01-01")
    proxy.wait_for(lambda: proxy.insert_count() == 1)
    (task,) = tasks(ws.db)
    job_id = proxy.inserts[0].job_id
    # The id was stored before jobs.insert was sent, and it is deterministic (not of the SQL).
    assert task["job_id"] == job_id and re.fullmatch(rf"bills_r1_t{task['id']}_a1_[0-9a-f]{{8}}", job_id)
    assert proxy.inserts[0].labels == {
        "runbook_run": "1", "runbook_processor": "load", "runbook_date": "2024-01-01", "runbook_task": str(task["id"]),
    }  # fmt: skip
    os.kill(controller.process.pid, signal.SIGKILL)
    controller.finish(10)

    resumed = start(ws, "resume")
    # The new controller looks the job up (jobs.get) and waits for it; then the job finishes.
    wait_for(
        lambda: any(m == "GET" and f"/jobs/{job_id}" in p for m, p, s in proxy.seen[-20:]), what="a poll"
    )
    proxy.release()
    code, out = resumed.finish()
    assert code == 0, out
    assert proxy.insert_count() == 1, proxy.inserts  # no second jobs.insert for that attempt
    assert rows_by_date(bqemu.endpoint, dataset) == {"2024-01-01": 1}
    (task,) = tasks(ws.db)
    assert task["status"] == "succeeded" and task["job_id"] == job_id and task["rows_affected"] == 1
    assert [e["date"] for e in events(ws, "job_reattached")] == ["2024-01-01"]


def test_stop_cancels_the_running_job_and_resume_runs_it_once(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset)
    proxy.hold("INSERT")
    controller = start(ws, "run", "load", "--start", "2024-01-02", "--end", "2024-01-02")
    proxy.wait_for(lambda: proxy.insert_count() == 1)
    first = proxy.inserts[0].job_id
    wait_for(lambda: tasks(ws.db)[0]["job_id"] == first, what="job id stored")
    assert ws.runbook("stop", "1").code == 0
    code, out = controller.finish(60)
    assert code == 4, out
    assert proxy.cancels == [first]  # jobs.cancel, answered by the proxy (the emulator has none)
    (cancelled,) = events(ws, "job_cancelled")
    assert first in cancelled["message"] and cancelled["date"] == "2024-01-02"
    assert rows_by_date(bqemu.endpoint, dataset) == {}  # the cancelled job wrote nothing

    proxy.release()
    result = ws.runbook("resume")
    assert result.code == 0, result.stdout + result.stderr
    # The cancelled job is found (DONE, stopped) and the SQL runs once more, as the next job id.
    assert [i.job_id for i in proxy.inserts] == [first, f"{first}_x1"]
    assert rows_by_date(bqemu.endpoint, dataset) == {"2024-01-02": 1}


def test_a_step_past_its_timeout_has_its_job_cancelled_and_the_attempt_fails(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset)
    ws.config.write_text(ws.config.read_text().replace("pool: bq", "pool: bq\n    timeout: 1s"))
    proxy.hold("INSERT")
    result = ws.runbook("run", "load", "--start", "2024-01-02", "--end", "2024-01-02")
    assert result.code == 1, result.stdout + result.stderr
    (insert,) = proxy.inserts
    assert insert.timeout_ms == 1000  # BigQuery ends the job itself should runbook be gone
    assert proxy.cancels == [insert.job_id]
    (task,) = tasks(ws.db)
    assert task["status"] == "failed"
    assert task["error_tail"] == f"step timed out after 1s: job {insert.job_id} cancelled"
    assert rows_by_date(bqemu.endpoint, dataset) == {}  # the cancelled job wrote nothing


def test_stop_of_a_run_whose_controller_died_cancels_the_job_it_left(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset)
    proxy.hold("INSERT")
    controller = start(ws, "run", "load", "--start", "2024-01-03", "--end", "2024-01-03")
    proxy.wait_for(lambda: proxy.insert_count() == 1)
    job_id = proxy.inserts[0].job_id
    os.kill(controller.process.pid, signal.SIGKILL)
    controller.finish(10)
    assert ws.runbook("stop", "1").code == 0
    assert proxy.cancels == [job_id]
    (cancelled,) = events(ws, "job_cancelled")
    assert job_id in cancelled["message"]
    proxy.release()
    assert ws.runbook("resume").code == 0
    assert [i.job_id for i in proxy.inserts] == [job_id, f"{job_id}_x1"]
    assert rows_by_date(bqemu.endpoint, dataset) == {"2024-01-03": 1}


def test_a_worker_that_takes_over_an_expired_lease_reattaches_and_the_old_holder_lets_go(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset)
    lease = {"RUNBOOK_LEASE_SECONDS": "3"}
    proxy.hold("INSERT")
    controller = start(ws, "run", "load", "--start", "2024-01-06", "--end", "2024-01-06", env=lease)
    proxy.wait_for(lambda: proxy.insert_count() == 1)
    job_id = proxy.inserts[0].job_id
    os.kill(controller.process.pid, signal.SIGSTOP)  # frozen: its lease runs out
    try:
        wait_for(
            lambda: query(ws.db, "SELECT lease_until < datetime('now') AS gone FROM task")[0]["gone"],
            what="expiry",
        )
        worker = start(ws, "worker", "--run", "1", "--idle-exit", "2", env=lease)
        wait_for(lambda: tasks(ws.db)[0]["claimed_by"] != query(ws.db, "SELECT controller_id FROM run")[0]["controller_id"],
                 what="the worker's claim")  # fmt: skip
        proxy.release()
        code, out = worker.finish()
        assert code == 0, out
    finally:
        os.kill(controller.process.pid, signal.SIGCONT)
    code, out = controller.finish()
    assert code == 0, out
    assert proxy.insert_count() == 1 and proxy.cancels == []  # re-attached; the old holder let it run
    assert rows_by_date(bqemu.endpoint, dataset) == {"2024-01-06": 1}
    (task,) = tasks(ws.db)
    assert task["status"] == "succeeded" and task["attempt"] == 2 and task["job_id"] == job_id


def test_reattach_to_a_job_that_never_existed_submits_it(
    proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    warehouse = direct(proxy.endpoint)
    sql = f"INSERT INTO `proj.{dataset}.daily` (d, n) VALUES (@date, 2)"
    params = {"date": dt.date(2024, 1, 5)}
    spec = JobSpec(job_id_for("t", 9, 9, 1), attach=True)
    first = warehouse.run_job(sql, params, spec)
    assert first.rows_affected == 1 and first.reattached == [] and proxy.insert_count() == 1
    again = warehouse.run_job(sql, params, spec)  # the job exists and succeeded: taken as done
    assert again.rows_affected == 1 and again.reattached == [spec.job_id] and proxy.insert_count() == 1
    assert rows_by_date(bqemu.endpoint, dataset) == {"2024-01-05": 1}
    warehouse.close()


# -- throttling and quotas -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (403, "rateLimitExceeded"),
        (403, "jobRateLimitExceeded"),
        (429, "rateLimitExceeded"),
        (500, "backendError"),
    ],
)
def test_rate_limits_and_5xx_are_retried_and_reported(
    proxy: BigQueryProxy, dataset: str, status: int, reason: str
) -> None:
    warehouse = direct(proxy.endpoint)
    proxy.fail("insert", count=2, status=status, reason=reason)
    heard: list[str] = []
    spec = JobSpec(job_id_for("t", 1, 1, status), on_throttle=heard.append)
    result = warehouse.run_job(f"SELECT COUNT(*) AS n FROM `proj.{dataset}.daily`", {}, spec)
    assert result.job_ids == [spec.job_id]
    assert [i.status for i in proxy.inserts] == [status, status, 200]  # the same job id each time
    throttle = reason if reason.endswith("RateLimitExceeded") or reason == "rateLimitExceeded" else "HTTP 429"
    assert heard == ([] if status == 500 else [throttle] * 2)  # 5xx are retried, but are no throttle
    warehouse.close()


@pytest.mark.parametrize("reason", ["resourcesExceeded", "invalidQuery", "bytesBilledLimitExceeded"])
def test_permanent_errors_are_never_retried(proxy: BigQueryProxy, reason: str) -> None:
    warehouse = direct(proxy.endpoint)
    proxy.fail("insert", count=5, status=400, reason=reason)
    with pytest.raises(WarehouseError) as caught:
        warehouse.run_job("SELECT 1", {}, JobSpec("permanent_" + reason))
    assert not isinstance(caught.value, TransientWarehouseError) and proxy.insert_count() == 1
    warehouse.close()


def test_stop_ends_a_step_backing_off_from_rate_limits_at_once(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset)
    proxy.fail("insert", count=10_000, status=429, reason="rateLimitExceeded")
    controller = start(ws, "run", "load", "--start", "2024-01-07", "--end", "2024-01-07")
    proxy.wait_for(lambda: proxy.insert_count() >= 3)  # waits of ~1 s, ~2 s, ~4 s ...
    stopped = time.monotonic()
    assert ws.runbook("stop", "1").code == 0
    code, out = controller.finish(30)
    assert code == 4, out
    assert time.monotonic() - stopped < 8  # not the 10 s grace, nor the rest of the backoff
    sent = proxy.insert_count()
    time.sleep(1)
    assert proxy.insert_count() == sent  # nothing sent after the stop
    assert rows_by_date(bqemu.endpoint, dataset) == {}
    (task,) = tasks(ws.db)
    assert task["status"] == "pending" and task["job_id"] is not None  # resume probes it, then submits


def test_throttling_gives_up_at_the_deadline(proxy: BigQueryProxy) -> None:
    warehouse = direct(proxy.endpoint, retry_deadline=1.0)
    proxy.fail("insert", count=1000, status=429, reason="rateLimitExceeded")
    with pytest.raises(TransientWarehouseError, match="gave up after"):
        warehouse.run_job("SELECT 1", {}, JobSpec("deadline_1"))
    assert 3 <= proxy.insert_count() < 1000
    warehouse.close()


def test_a_daily_quota_is_not_retried_and_says_when_it_resets(proxy: BigQueryProxy) -> None:
    warehouse = direct(proxy.endpoint)
    proxy.daily_quota()
    with pytest.raises(QuotaExhausted) as caught:
        warehouse.run_job("SELECT 1", {}, JobSpec("quota_1"))
    assert proxy.insert_count() == 1
    resets = caught.value.resets_at.astimezone(dt.timezone(dt.timedelta(hours=-8)))
    # Midnight Pacific time (PST or PDT), within the next day.
    assert resets.minute == 0 and resets.hour in (0, 1)
    assert dt.timedelta(0) < caught.value.resets_at - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=24)
    warehouse.close()


def test_throttling_shrinks_the_pool_and_successes_grow_it_back(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator, hooks: Any
) -> None:
    hook = hooks(lambda n: 200)
    notify = "notify:\n          - url: ${HOOK}\n            on: [throttled]"
    ws = workspace(make_workspace, proxy, dataset, pool=4, top=notify, env={"HOOK": hook.url})
    proxy.fail("insert", count=3, status=403, reason="rateLimitExceeded")
    result = ws.runbook("run", "load", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert rows_by_date(bqemu.endpoint, dataset) == {f"2024-01-0{d}": 1 for d in range(1, 9)}
    changes = query(ws.db, "SELECT kind, message, data FROM event WHERE kind LIKE 'pool_%' ORDER BY id")
    sizes = [4, *[json.loads(e["data"])["effective_size"] for e in changes]]
    # A throttle halves (4 -> 2, once per burst, at least 1); each success adds one back up to 4.
    assert changes[0]["kind"] == "pool_throttled" and changes[0]["message"].startswith(
        "pool bq: 4 -> 2 of 4 slots"
    )
    assert "rateLimitExceeded" in changes[0]["message"]
    assert min(sizes) >= 1 and sizes[-1] == 4
    for before, after, change in zip(sizes, sizes[1:], changes, strict=False):
        expected = max(1, before // 2) if change["kind"] == "pool_throttled" else before + 1
        assert after == expected, (sizes, changes)
    assert query(ws.db, "SELECT size, effective_size FROM pool WHERE name = 'bq'") == [
        {"size": 4, "effective_size": 4}
    ]
    status = ws.cli("status", "--json", check=True).json()
    assert status["pools"] == [{"name": "bq", "size": 4, "effective_slots": 4}]
    (sent,) = wait_for(lambda: hook.bodies("throttled"), what="the throttled webhook")
    assert {k: sent["details"][k] for k in ("pool", "size", "effective_size", "reason")} == {
        "pool": "bq", "size": 4, "effective_size": 2, "reason": "rateLimitExceeded"
    }  # fmt: skip


def test_a_daily_quota_interrupts_the_run_and_resume_waits_for_the_reset(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset, pool=1)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).replace(microsecond=0)
    proxy.daily_quota(count=1)
    result = ws.runbook("run", "load", "--start", "2024-01-01", "--end", "2024-01-03",
                        env={"RUNBOOK_QUOTA_RESET_AT": later.isoformat()})  # fmt: skip
    assert result.code == 4, result.stdout + result.stderr
    (run,) = ws.cli("status", "--json", check=True).json()["runs"]
    assert run["status"] == "interrupted" and "daily quota exhausted" in run["error"]
    assert run["resume_after"] == later.isoformat().replace("+00:00", "Z")
    assert all(t["status"] in ("pending", "succeeded") for t in tasks(ws.db))

    handoff = ws.cli("handoff", "--format", "json", "--out", "-", check=True).json()
    situations = {(a["situation"], a["command"]) for a in handoff["next_actions"]}
    assert ("quota_pause", "runbook resume 1 --detach") in situations
    assert not any(situation == "interrupted" for situation, _ in situations)  # a pause, not an interruption
    (paused,) = handoff["interrupted"]
    assert paused["resume_after"] == run["resume_after"] and "daily quota exhausted" in paused["error"]
    markdown = ws.cli("handoff", "--out", "-", check=True).stdout
    assert "(resume after " in markdown and "daily quota exhausted" in markdown

    waiting = ws.runbook("resume")
    assert waiting.code == 4 and waiting.stdout == ""
    line = waiting.stderr.strip()
    assert "\n" not in line and later.strftime("%Y-%m-%d %H:%M UTC") in line and "--force" in line

    # After the reset (made to be now) it continues without --force.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    update(ws.db, "UPDATE run SET resume_after = ? WHERE id = 1", (soon.strftime("%Y-%m-%d %H:%M:%S.%f"),))
    wait_for(lambda: dt.datetime.now(dt.UTC) > soon, what="the reset")
    result = ws.runbook("resume")
    assert result.code == 0, result.stdout + result.stderr
    assert rows_by_date(bqemu.endpoint, dataset) == {"2024-01-01": 1, "2024-01-02": 1, "2024-01-03": 1}


def test_resume_force_tries_before_the_reset(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, bqemu: Emulator
) -> None:
    ws = workspace(make_workspace, proxy, dataset, pool=1)
    proxy.daily_quota(count=1)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=5)).isoformat()
    assert ws.runbook("run", "load", "--start", "2024-01-04", "--end", "2024-01-04",
                      env={"RUNBOOK_QUOTA_RESET_AT": later}).code == 4  # fmt: skip
    assert ws.runbook("resume").code == 4
    result = ws.runbook("resume", "--force")
    assert result.code == 0, result.stdout + result.stderr
    assert rows_by_date(bqemu.endpoint, dataset) == {"2024-01-04": 1}
    assert process_alive(os.getpid())


# -- cost -------------------------------------------------------------------------------------------


def test_cost_is_recorded_per_task_and_summed_in_show_history_and_the_handoff(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str
) -> None:
    ws = workspace(make_workspace, proxy, dataset)
    # The emulator reports no bytes: the proxy fills in the statistics BigQuery would give.
    proxy.job_bytes = lambda sql: 3 * GIB if "INSERT" in sql else 0
    assert ws.runbook("run", "load", "--start", "2024-01-01", "--end", "2024-01-02").code == 0
    task = tasks(ws.db)[0]
    assert (task["bytes_processed"], task["bytes_billed"]) == (3 * GIB, 3 * GIB) and task["slot_ms"] > 0
    slot_ms = sum(t["slot_ms"] for t in tasks(ws.db))
    expected = {"bytes_processed": 6 * GIB, "bytes_billed": 6 * GIB, "slot_ms": slot_ms, "tasks": 2}

    shown = ws.cli("show", "1", "--json", "--tasks", check=True).json()
    assert shown["run"]["cost"] == expected and shown["run"]["per_processor"][0]["cost"] == expected
    assert {t["job_id"] for t in shown["tasks"]} == {t["job_id"] for t in tasks(ws.db)}
    assert ws.cli("history", "--json", check=True).json()["runs"][0]["cost"] == expected
    text = ws.cli("show", "1", check=True).stdout
    assert "WAREHOUSE COST" in text and "load                          6.0 GiB    6.0 GiB" in text

    handoff = ws.cli("handoff", "--format", "json", "--out", "-", check=True).json()
    (performance,) = handoff["performance"]
    assert performance["bytes_billed"] == 6 * GIB and performance["cost_usd"] == round(6 / 1024 * 6.25, 4)
    markdown = ws.cli("handoff", "--out", "-", check=True).stdout
    assert "| Processor | Bytes processed | Bytes billed | Slot hours | Cost (USD) |" in markdown
    assert f"| load | {6 * GIB:,} | {6 * GIB:,} |" in markdown and "| 0.04 |" in markdown


def test_plan_estimate_dry_runs_first_and_last_date_and_prices_the_range(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str
) -> None:
    ws = workspace(
        make_workspace, proxy, dataset, extra="price_per_tib: 5.0\n          maximum_bytes_billed: 3000000000"
    )
    # Dry runs are answered by the proxy (the emulator has no dry-run statistics): 1 GiB for the
    # first date, 3 GiB for the last.
    seen: list[str] = []

    def by_date(sql: str) -> int:
        seen.append(sql)
        return GIB if len(seen) == 1 else 3 * GIB

    proxy.dry_run_bytes = by_date
    result = ws.cli("plan", "load", "--estimate", "--json", check=True).json()
    (estimate,) = result["estimate"]
    assert estimate["tasks"] == 8 and (estimate["first_date"], estimate["last_date"]) == (
        "2024-01-01",
        "2024-01-08",
    )
    assert (estimate["first_bytes"], estimate["last_bytes"]) == (GIB, 3 * GIB)
    assert estimate["estimated_bytes"] == 16 * GIB and estimate["estimated_cost_usd"] == round(
        16 / 1024 * 5.0, 2
    )
    assert "maximum_bytes_billed 3000000000" in estimate["warning"]
    assert proxy.insert_count(dry_run=True) == 2 and proxy.insert_count() == 0  # nothing ran
    assert not ws.db.exists() or tasks(ws.db) == []  # nothing recorded either
    seen.clear()
    text = ws.cli("plan", "load", "--estimate", check=True).stdout
    assert (
        "estimate load: 8 task(s), 1.0 GiB on 2024-01-01, 3.0 GiB on 2024-01-08: ~16.0 GiB in all, ~$0.08"
        in text
    )
    assert "estimated cost of the plan: $0.08 at $5/TiB" in text


def test_on_postgresql_pools_adapt_and_costs_add_up(
    make_workspace: Any, proxy: BigQueryProxy, dataset: str, pg_url: str
) -> None:
    ws = workspace(make_workspace, proxy, dataset, pool=4, top=f"state:\n          database_url: {pg_url}")
    proxy.job_bytes = lambda sql: GIB if "INSERT" in sql else 0
    proxy.fail("insert", count=2, status=403, reason="jobRateLimitExceeded")
    result = ws.runbook("run", "load")
    assert result.code == 0, result.stdout + result.stderr
    shown = ws.cli("show", "1", "--json", "--tasks", check=True).json()
    assert shown["run"]["cost"]["bytes_billed"] == 8 * GIB and shown["run"]["cost"]["tasks"] == 8
    assert all(t["job_id"] and t["bytes_processed"] == GIB for t in shown["tasks"])
    kinds = [e["kind"] for e in shown["events"] if e["kind"].startswith("pool_")]
    assert kinds[0] == "pool_throttled" and "pool_recovered" in kinds
    assert ws.cli("status", "--json", check=True).json()["pools"] == [
        {"name": "bq", "size": 4, "effective_slots": 4}
    ]
