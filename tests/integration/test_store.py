"""The state store's claim semantics, on a real SQLite file and on the real PostgreSQL server.

Two ``Store`` objects on one database stand for two controllers (each has its own engine and
connection pool). Claims are compare-and-set updates: whatever the timing, one claimant wins.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.clock import utcnow
from runbook.state.records import Task
from runbook.state.store import Store

LEASE = dt.timedelta(seconds=60)
RACES = 60


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'state' / 'runbook.db'}"


@pytest.fixture
def stores(url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores (two engines) on the same database, as two controllers would have."""
    first = Store.open(url)
    second = Store.open(url)
    yield first, second
    first.close()
    second.close()


def new_run(store: Store, dates: int, *, max_attempts: int = 1) -> tuple[int, list[int]]:
    """A run with one pending task per date; returns its id and the task ids in date order."""
    run = store.create_run(processors=["load"], start_date="2024-01-01", end_date="2024-12-31")
    assert run.id is not None
    day = dt.date(2024, 1, 1)
    rows = []
    for seq in range(dates):
        date = (day + dt.timedelta(days=seq)).isoformat()
        rows.append(
            {"processor": "load", "date": date, "end_date": date, "seq": seq, "max_attempts": max_attempts}
        )
    store.add_tasks(run.id, rows)
    return run.id, [task.id for task in store.tasks(run.id) if task.id is not None]


def by_id(store: Store, run_id: int) -> dict[int, Task]:
    return {task.id: task for task in store.tasks(run_id) if task.id is not None}


def test_concurrent_claims_of_the_same_task_have_exactly_one_winner(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, task_ids = new_run(first, RACES)
    barrier = threading.Barrier(2)
    wins: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def claimant(store: Store, name: str) -> None:
        try:
            for task_id in task_ids:
                barrier.wait(timeout=30)  # both claim this task at the same moment
                if store.claim_task(task_id, name, utcnow() + LEASE):
                    wins[name].append(task_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=claimant, args=(s, n)) for s, n in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(wins["a"] + wins["b"]) == sorted(task_ids)  # each task won exactly once
    assert not set(wins["a"]) & set(wins["b"])
    tasks = by_id(first, run_id)
    for name, won in wins.items():
        for task_id in won:
            assert tasks[task_id].claimed_by == name
            assert tasks[task_id].status == "running"
            assert tasks[task_id].attempt == 1  # the loser's update changed nothing


def test_an_unexpired_lease_holds_and_an_expired_one_can_be_taken_over(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, (task_id,) = new_run(first, 1, max_attempts=3)
    now = utcnow()
    assert first.claim_task(task_id, "a", now + LEASE, "v1", now=now)
    assert not second.claim_task(task_id, "b", now + 2 * LEASE, "v1", now=now + LEASE / 2)
    assert not first.claim_task(task_id, "a", now + LEASE, "v1", now=now)  # not even by its owner
    assert by_id(first, run_id)[task_id].claimed_by == "a"

    later = now + LEASE + dt.timedelta(seconds=1)  # controller "a" stopped heartbeating
    assert second.claim_task(task_id, "b", later + LEASE, "v2", now=later)
    task = by_id(first, run_id)[task_id]
    assert (task.claimed_by, task.status, task.attempt, task.code_version) == ("b", "running", 2, "v2")
    assert task.lease_until == later + LEASE


def test_finished_tasks_cannot_be_claimed(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, (done, retrying) = new_run(first, 2, max_attempts=2)
    now = utcnow()
    for task_id in (done, retrying):
        assert first.claim_task(task_id, "a", now + LEASE, now=now)
    first.finish_task(done, "succeeded", started_at=now, exit_code=0)
    retry_at = now + dt.timedelta(seconds=30)
    first.finish_task(retrying, "failed", started_at=now, error="boom", retry_at=retry_at)
    far = now + 10 * LEASE
    assert not second.claim_task(done, "b", far + LEASE, now=far)
    tasks = by_id(second, run_id)
    assert tasks[done].status == "succeeded"
    assert tasks[done].lease_until is None
    assert tasks[retrying].status == "pending"
    assert tasks[retrying].not_before == retry_at
    assert tasks[retrying].error_tail == "boom"
    assert second.claim_task(retrying, "b", now + LEASE, now=now)  # a retry is an ordinary claim


def test_heartbeat_extends_only_the_owners_running_tasks(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, (mine, theirs, finished, waiting) = new_run(first, 4)
    assert first.take_run(run_id, controller_id="a", pid=1, host="h", log_path="x.log")
    now = utcnow()
    lease = now + LEASE
    assert first.claim_task(mine, "a", lease, now=now)
    assert second.claim_task(theirs, "b", lease, now=now)
    assert first.claim_task(finished, "a", lease, now=now)
    first.finish_task(finished, "succeeded", started_at=now)
    before = first.get_run(run_id)
    assert before is not None

    extended = now + 5 * LEASE
    first.heartbeat(run_id, "a", extended)
    tasks = by_id(second, run_id)
    assert tasks[mine].lease_until == extended
    assert tasks[theirs].lease_until == lease
    assert tasks[finished].lease_until is None
    assert tasks[waiting].lease_until is None
    after = first.get_run(run_id)
    assert after is not None and before.heartbeat_at is not None and after.heartbeat_at is not None
    assert after.heartbeat_at > before.heartbeat_at

    second.heartbeat(run_id, "b", extended + LEASE)  # "b" does not own the run: run untouched
    assert by_id(first, run_id)[theirs].lease_until == extended + LEASE
    unchanged = first.get_run(run_id)
    assert unchanged is not None and unchanged.heartbeat_at == after.heartbeat_at


def test_only_one_controller_takes_a_queued_run(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, _ = new_run(first, 1)
    barrier = threading.Barrier(2)
    taken: dict[str, bool] = {}

    def take(store: Store, name: str) -> None:
        barrier.wait(timeout=30)
        taken[name] = store.take_run(run_id, controller_id=name, pid=1, host="h", log_path="x.log")

    threads = [threading.Thread(target=take, args=(s, n)) for s, n in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(taken.values()) == [False, True]
    run = first.get_run(run_id)
    assert run is not None and run.status == "running"
    assert taken[run.controller_id or ""] is True


def test_mark_interrupted_returns_running_tasks_to_pending_with_a_spare_attempt(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    run_id, (in_flight, done, waiting) = new_run(first, 3, max_attempts=2)
    assert first.take_run(run_id, controller_id="a", pid=1, host="h", log_path="x.log")
    now = utcnow()
    assert first.claim_task(in_flight, "a", now + LEASE, now=now)
    first.set_task_pid(in_flight, 4242)
    assert first.claim_task(done, "a", now + LEASE, now=now)
    first.finish_task(done, "succeeded", started_at=now)

    returned = second.mark_interrupted(run_id, "received SIGTERM")
    assert [(task.id, task.pid) for task in returned] == [(in_flight, 4242)]
    tasks = by_id(first, run_id)
    flight = tasks[in_flight]
    assert (flight.status, flight.claimed_by, flight.lease_until) == ("pending", None, None)
    assert (flight.attempt, flight.max_attempts) == (1, 3)  # the interrupted try is not counted
    assert tasks[done].status == "succeeded"
    assert (tasks[waiting].status, tasks[waiting].max_attempts) == ("pending", 2)
    run = first.get_run(run_id)
    assert run is not None
    assert (run.status, run.error, run.controller_id) == ("interrupted", "received SIGTERM", None)
    assert run.finished_at is not None

    assert second.take_run(run_id, controller_id="b", pid=2, host="h", log_path="x.log")
    assert second.claim_task(in_flight, "b", now + LEASE)
    assert by_id(first, run_id)[in_flight].attempt == 2


def test_reopen_tasks_gives_failed_blocked_and_cancelled_tasks_fresh_retries(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    run_id, (ok, failed, blocked, cancelled, skipped) = new_run(first, 5, max_attempts=2)
    now = utcnow()
    for task_id in (ok, failed):
        assert first.claim_task(task_id, "a", now + LEASE, now=now)
    first.finish_task(ok, "succeeded", started_at=now)
    first.finish_task(failed, "failed", started_at=now, error="boom")
    first.set_tasks_status([blocked], "blocked", "upstream failed")
    first.set_tasks_status([cancelled], "cancelled")
    first.set_tasks_status([skipped], "skipped", skip_reason="upstream_missing")

    assert second.reopen_tasks(run_id) == 3
    tasks = by_id(first, run_id)
    assert Counter(task.status for task in tasks.values()) == {"pending": 3, "succeeded": 1, "skipped": 1}
    assert (tasks[failed].attempt, tasks[failed].max_attempts) == (1, 3)
    assert tasks[blocked].max_attempts == 2
    assert tasks[skipped].skip_reason == "upstream_missing"
    assert second.reopen_tasks(run_id) == 0
    assert second.claim_task(failed, "b", now + LEASE)


def test_progress_and_succeeded_ranges_read_what_was_written(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, task_ids = new_run(first, 4)
    now = utcnow()
    for task_id in task_ids[:3]:
        assert first.claim_task(task_id, "a", now + LEASE, "v7", now=now)
        first.finish_task(task_id, "succeeded", started_at=now, now=now + dt.timedelta(seconds=2))
    assert second.progress([run_id])[run_id] == Counter({"succeeded": 3, "pending": 1})
    assert second.outcomes([run_id])[run_id] == {("load", "succeeded", None): 3, ("load", "pending", None): 1}
    assert second.succeeded_ranges("load", "2024-01-02", "2024-01-31") == [
        ("2024-01-02", "2024-01-02", "v7"),
        ("2024-01-03", "2024-01-03", "v7"),
    ]
    assert second.finished_windows([run_id])[run_id] == (3, 2.0)


def test_claims_from_many_short_lived_threads_do_not_exhaust_the_pool(stores: tuple[Store, Store]) -> None:
    """Each thread keeps a connection for its claims; one that has ended gives it back."""
    first, _ = stores
    run_id, task_ids = new_run(first, 40)  # more threads than the pool's 15 connections
    results: list[bool] = []
    for task_id in task_ids:
        thread = threading.Thread(
            target=lambda t=task_id: results.append(first.claim_task(t, "a", utcnow() + LEASE))
        )
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "a claim waited for a free connection"
    assert results == [True] * len(task_ids)
    assert Counter(task.status for task in first.tasks(run_id)) == {"running": len(task_ids)}
