"""runbook end to end with its state on the real PostgreSQL server (``RUNBOOK_DATABASE_URL``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from core_helpers import wait_for

from runbook.clock import utcnow
from runbook.errors import StateError
from runbook.state.connect import redact_url
from runbook.state.migrate import make_engine
from runbook.state.queue import Source
from runbook.state.records import Task
from runbook.state.store import Store

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

PIPELINE = """
processors:
  extract:
    command: ["sh", "-c", "echo extract {{ date }}"]
  load:
    command: "echo load {{ date }}"
    needs: [extract]
"""
START, END = "2024-03-01", "2024-03-04"


def run_pipeline(make_workspace: Callable[..., Any], url: str) -> Any:
    ws = make_workspace(PIPELINE, extra_env={"RUNBOOK_DATABASE_URL": url})
    result = ws.runbook("run", "--start", START, "--end", END, "--workers", "2", "--json")
    assert result.code == 0, result
    assert not ws.db.exists()  # nothing went to the default SQLite file
    return ws, result


def test_run_status_and_history_on_postgres(make_workspace: Callable[..., Any], pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://")
    ws, result = run_pipeline(make_workspace, pg_url)
    shown = result.json()
    assert shown["run"]["status"] == "succeeded"
    assert shown["run"]["progress"]["succeeded"] == 8

    status = ws.cli("status", "--json", check=True).json()
    (run,) = status["runs"]
    assert (run["id"], run["status"]) == (shown["run"]["id"], "succeeded")
    assert run["progress"] == {**run["progress"], "total": 8, "succeeded": 8, "failed": 0, "pending": 0}

    history = ws.cli("history", "--processor", "load", "--json", check=True).json()
    assert [r["id"] for r in history["runs"]] == [run["id"]]
    assert history["runs"][0]["start_date"] == START

    again = ws.runbook("run", "--start", START, "--end", END, "--json")
    assert again.code == 0, again
    second = again.json()["run"]
    assert second["progress"]["skipped"] == 8  # every date is already built: read back from PostgreSQL
    history = ws.cli("history", "--json", check=True).json()
    assert [r["id"] for r in history["runs"]] == [second["id"], run["id"]]


def test_a_postgresql_url_without_a_driver_uses_psycopg(
    make_workspace: Callable[..., Any], pg_url: str
) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    engine = make_engine(plain)
    assert (engine.url.drivername, engine.dialect.driver) == ("postgresql+psycopg", "psycopg")
    engine.dispose()
    ws, _ = run_pipeline(make_workspace, plain)
    status = ws.cli("status", "--json", check=True).json()
    assert [r["status"] for r in status["runs"]] == ["succeeded"]
    current = ws.cli("db", "current", "--json", check=True).json()
    assert current["up_to_date"] is True
    assert current["url"].startswith("postgresql://")


def test_the_password_in_the_url_never_appears_in_output(
    make_workspace: Callable[..., Any], pg_url: str
) -> None:
    secret = "pw-9f3c2e1d"
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    ws, result = run_pipeline(make_workspace, url)
    outputs = [
        result,
        ws.cli("status"),
        ws.cli("status", "--json"),
        ws.cli("history", "--json"),
        ws.cli("db", "current", "--json"),
        ws.cli("show", str(result.json()["run"]["id"]), "--json"),
    ]
    for output in outputs:
        assert output.code == 0, output
        assert secret not in output.stdout + output.stderr
    logs = "".join(path.read_text("utf-8") for path in (ws.root / "state" / "logs").glob("*.log"))
    assert secret not in logs
    assert redact_url(url).count("***") == 1

    unreachable = url.replace("127.0.0.1:5432", "127.0.0.1:1", 1)
    refused = ws.cli("status", env={"RUNBOOK_DATABASE_URL": unreachable})
    assert refused.code == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "***" in refused.stderr
    assert secret not in refused.stderr


def backends(admin_url: str, database: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_dropped_connection_fails_one_write_in_one_line_then_reconnects(pg_url: str) -> None:
    admin = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    database = pg_url.rsplit("/", 1)[1]
    store = Store.open(pg_url)
    run = store.create_run(processors=["load"], start_date="2024-01-01", end_date="2024-01-02")
    assert store.take_run(run.id, seen_epoch=0, owner="o", pid=1, host="h", log_path="x", now=utcnow()) == 1
    store.add_tasks(
        run.id, [{"processor": "load", "date": d, "end_date": d} for d in ("2024-01-01", "2024-01-02")]
    )

    def claim_one() -> list[Task]:
        now = utcnow()
        return store.claim("a", [Source(run.id)], limit=1, pools={}, caps={}, now=now,
                           lease_until=now + dt.timedelta(seconds=60)).tasks  # fmt: skip

    assert len(claim_one()) == 1

    with psycopg.connect(admin, autocommit=True) as conn:  # the server drops every session
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    with pytest.raises(StateError) as caught:
        claim_one()
    assert "\n" not in caught.value.message
    assert "refused a write" in caught.value.message
    assert len(claim_one()) == 1  # a fresh connection, and the failed claim was not applied
    assert {task.attempt for task in store.tasks(run.id)} == {1}

    assert backends(admin, database) > 0
    store.close()
    wait_for(lambda: backends(admin, database) == 0, timeout=10, what="the store's connections to close")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_successes_recorded_together_release_each_dependent_once_per_upstream(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """Both stores settle a batch of successes the same way (PostgreSQL in one statement)."""
    from runbook.kinds import TaskStatus
    from runbook.state.graph import Links, Need
    from runbook.state.queue import Outcome

    url = request.getfixturevalue("pg_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 'state.db'}"
    store = Store.open(url)
    run = store.create_run(processors=["a", "b", "c"], start_date="2024-01-01", end_date="2024-01-03")
    assert store.take_run(run.id, seen_epoch=0, owner="o", pid=1, host="h", log_path="x", now=utcnow()) == 1
    days = ("2024-01-01", "2024-01-02", "2024-01-03")
    store.add_tasks(
        run.id,
        [*({"processor": "a", "date": d, "end_date": d, "seq": n, "status": TaskStatus.PENDING} for n, d in
           enumerate(days)),
         *({"processor": "b", "date": d, "end_date": d, "seq": 10 + n} for n, d in enumerate(days)),
         {"processor": "c", "date": days[0], "end_date": days[1], "seq": 20}],
    )  # fmt: skip
    store.add_graph(run.id, Links(needs=[Need("b", "a", 1), Need("c", "a", 1)], past=[], gates=[]))
    waits = {(t.processor, t.date): t.waits for t in store.tasks(run.id)}
    assert waits == {**{("a", d): 0 for d in days}, **{("b", d): 1 for d in days}, ("c", days[0]): 2}
    assert {t.status for t in store.tasks(run.id)} == {"pending"}  # a str enum is stored as its value

    def claim(worker: str, limit: int) -> list[Task]:
        now = utcnow()
        return store.claim(worker, [Source(run.id, epoch=1)], limit=limit, pools={}, caps={}, now=now,
                           lease_until=now + dt.timedelta(seconds=60)).tasks  # fmt: skip

    first = claim("w", 10)
    assert sorted(t.processor for t in first) == ["a", "a", "a"]
    now = utcnow()
    outcomes = [Outcome(t, TaskStatus.SUCCEEDED, seconds=0.5, rows_affected=7, started=now, finished=now)
                for t in first]  # fmt: skip
    # Another worker's report of the same tasks is ignored and releases nothing.
    assert store.record("intruder", outcomes[:1], utcnow()) == [False]
    assert store.record("w", outcomes, utcnow()) == [True, True, True]
    assert store.record("w", outcomes[:1], utcnow()) == [False]  # recorded once only

    by_key = {(t.processor, t.date): t for t in store.tasks(run.id)}
    assert {k: t.waits for k, t in by_key.items() if k[0] != "a"} == {
        **{("b", d): 0 for d in days},
        ("c", days[0]): 0,
    }
    built = by_key[("a", days[0])]
    assert (built.status, built.rows_affected, built.duration_seconds) == ("succeeded", 7, 0.5)
    latest_rows = store.latest_by_date("a", days[0], days[-1])
    assert [row[0] for row in latest_rows] == list(days)
    assert sorted(t.processor for t in claim("w", 10)) == ["b", "b", "b", "c"]
    store.close()
