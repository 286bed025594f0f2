"""The work queue's semantics, on a real SQLite file and on the real PostgreSQL server.

Two ``Store`` objects on one database stand for two processes (each has its own connections).
Every change that others may race is one conditional write: whatever the timing, one wins.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.clock import utcnow
from runbook.errors import RunConflict
from runbook.state.graph import Links, Need
from runbook.state.ownership import LostRun
from runbook.state.queue import Outcome, Source
from runbook.state.records import Task
from runbook.state.store import Store

LEASE = dt.timedelta(seconds=60)
RACES = 40


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'state' / 'runbook.db'}"


@pytest.fixture
def stores(url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on the same database, as two processes would have."""
    first = Store.open(url)
    second = Store.open(url)
    yield first, second
    first.close()
    second.close()


def new_run(store: Store, dates: int, *, processors: tuple[str, ...] = ("load",), max_attempts: int = 1,
            pool: str | None = None) -> tuple[int, list[int]]:  # fmt: skip
    """A running run (epoch 1, owner "owner") with one pending task per processor and date; each
    processor after the first needs the one before it on the same date."""
    run = store.create_run(processors=list(processors), start_date="2024-01-01", end_date="2024-12-31")
    epoch = store.take_run(
        run.id, seen_epoch=0, owner="owner", pid=1, host="h", log_path="x.log", now=utcnow()
    )
    assert epoch == 1
    day = dt.date(2024, 1, 1)
    rows = []
    for offset in range(dates):
        date = (day + dt.timedelta(days=offset)).isoformat()
        for position, name in enumerate(processors):
            rows.append({"processor": name, "date": date, "end_date": date, "seq": offset * 10 + position,
                         "max_attempts": max_attempts, "pool": pool})  # fmt: skip
    store.add_tasks(run.id, rows)
    needs = [Need(processors[p], processors[p - 1], 1) for p in range(1, len(processors))]
    store.add_graph(run.id, Links(needs, [], []))
    tasks = store.tasks(run.id)
    return run.id, [t.id for t in tasks]


def claim(store: Store, worker: str, run_id: int, *, limit: int = 1, now: dt.datetime | None = None,
          pools: dict[str, int] | None = None, epoch: int | None = None) -> list[Task]:  # fmt: skip
    now = now or utcnow()
    found = store.claim(worker, [Source(run_id, epoch)], limit=limit, pools=pools or {}, caps={}, now=now,
                        lease_until=now + LEASE)  # fmt: skip
    return found.tasks


def by_id(store: Store, run_id: int) -> dict[int, Task]:
    return {task.id: task for task in store.tasks(run_id)}


def test_concurrent_claims_never_give_a_task_to_two_holders(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, task_ids = new_run(first, RACES)
    won: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def claimant(store: Store, name: str) -> None:
        barrier.wait()
        while True:
            got = claim(store, name, run_id, limit=3)
            if not got:
                return
            won[name] += [task.id for task in got]

    threads = [threading.Thread(target=claimant, args=(s, n)) for s, n in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(won["a"] + won["b"]) == sorted(task_ids)  # each exactly once
    rows = by_id(first, run_id)
    assert all(rows[t].claimed_by == name for name in won for t in won[name])
    assert {rows[t].attempt for t in task_ids} == {1}


def test_a_held_lease_holds_and_an_expired_one_is_taken_over_without_counting(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    run_id, (task_id,) = new_run(first, 1, max_attempts=1)
    now = utcnow()
    assert [t.id for t in claim(first, "a", run_id, now=now)] == [task_id]
    assert claim(second, "b", run_id, now=now + dt.timedelta(seconds=30)) == []  # lease still held
    later = now + dt.timedelta(seconds=61)
    (taken,) = claim(second, "b", run_id, now=later)  # "a" stopped beating: its lease ran out
    assert (taken.claimed_by, taken.attempt, taken.max_attempts) == (
        "b",
        2,
        2,
    )  # the lost attempt is not counted
    # "a" comes back: its result is not recorded, "b"'s is.
    assert first.record("a", [Outcome(taken, "succeeded")], later) == [False]
    assert second.record("b", [Outcome(taken, "succeeded", exit_code=0)], later) == [True]
    assert by_id(first, run_id)[task_id].status == "succeeded"


def test_a_beat_extends_only_the_holders_leases_and_says_what_it_still_holds(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    run_id, task_ids = new_run(first, 4)
    now = utcnow()
    mine = {t.id for t in claim(first, "a", run_id, limit=2, now=now)}
    theirs = {t.id for t in claim(second, "b", run_id, limit=2, now=now)}
    assert first.beat("a", now, now + dt.timedelta(hours=1)) == mine
    rows = by_id(first, run_id)
    assert all(rows[t].lease_until and rows[t].lease_until > now + dt.timedelta(minutes=30) for t in mine)
    assert all(rows[t].lease_until and rows[t].lease_until < now + dt.timedelta(minutes=2) for t in theirs)


def test_a_success_releases_its_dependents_and_a_failure_blocks_everything_downstream(
    stores: tuple[Store, Store],
) -> None:
    store, _ = stores
    run_id, _ = new_run(store, 2, processors=("load", "merge", "publish"))
    now = utcnow()
    loads = claim(store, "a", run_id, limit=5, now=now)
    assert sorted(t.processor for t in loads) == ["load", "load"]  # merge and publish wait
    ok, bad = sorted(loads, key=lambda t: t.date)
    assert store.record("a", [Outcome(ok, "succeeded"), Outcome(bad, "failed", error="boom")], now) == [
        True,
        True,
    ]
    (merge,) = claim(store, "a", run_id, limit=5, now=now)
    assert (merge.processor, merge.date) == ("merge", ok.date)
    rows = {(t.processor, t.date): t for t in store.tasks(run_id)}
    assert rows[("merge", bad.date)].status == rows[("publish", bad.date)].status == "blocked"
    assert rows[("publish", bad.date)].error_tail == f"upstream load {bad.date} failed"


def test_pools_hold_across_processes(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, _ = new_run(first, 6, pool="warehouse")
    now = utcnow()
    pools = {"warehouse": 2}
    got = claim(first, "a", run_id, limit=5, now=now, pools=pools) + claim(
        second, "b", run_id, limit=5, now=now, pools=pools
    )
    assert len(got) == 2
    assert store_running(first, run_id) == 2
    first.record("a", [Outcome(got[0], "succeeded")], now) if got[0].claimed_by == "a" else second.record(
        "b", [Outcome(got[0], "succeeded")], now
    )
    assert len(claim(second, "b", run_id, limit=5, now=now, pools=pools)) == 1  # one slot came free


def test_processes_that_record_their_pools_at_once_all_succeed(stores: tuple[Store, Store]) -> None:
    """Two workers starting together record the same new pools (and a changed size): neither is
    refused. (On SQLite a read before the write lock made one of them fail "database is locked".)"""
    failures: list[str] = []

    def ensure(store: Store, barrier: threading.Barrier, pools: dict[str, int]) -> None:
        barrier.wait()
        try:
            store.ensure_pools(pools, utcnow())
        except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
            failures.append(f"{type(exc).__name__}: {exc}")

    for round_ in range(RACES):
        size = 2 + round_ % 3
        pools = {f"p{round_}": size, f"q{round_}": size, "shared": size}  # new ones, and a resized one
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=ensure, args=(store, barrier, pools)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        sizes = stores[0].pool_sizes()
        assert sizes[f"p{round_}"] == sizes[f"q{round_}"] == (size, size), (round_, sizes)
        assert sizes["shared"][0] == size and sizes["shared"][1] <= size, (round_, sizes)
    assert failures == []


def store_running(store: Store, run_id: int) -> int:
    return sum(1 for t in store.tasks(run_id) if t.status == "running")


def test_only_one_process_takes_a_run_and_the_loser_cannot_end_it(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run = first.create_run(
        processors=["load"], start_date="2024-01-01", end_date="2024-01-02", status="interrupted"
    )
    results: dict[str, int | None] = {}
    barrier = threading.Barrier(2)

    def take(store: Store, name: str) -> None:
        barrier.wait()
        results[name] = store.take_run(
            run.id, seen_epoch=0, owner=name, pid=1, host="h", log_path="x", now=utcnow()
        )

    threads = [threading.Thread(target=take, args=(s, n)) for s, n in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [name for name, epoch in results.items() if epoch is not None]
    assert len(winners) == 1 and results[winners[0]] == 1
    loser = "b" if winners[0] == "a" else "a"
    with pytest.raises(LostRun):
        first.finalize(run.id, loser, 1, utcnow())
    assert first.finalize(run.id, winners[0], 1, utcnow()) == "succeeded"  # nothing pending or running


def test_a_run_ends_only_when_nothing_is_pending_or_running(stores: tuple[Store, Store]) -> None:
    store, _ = stores
    run_id, _ = new_run(store, 1)
    now = utcnow()
    assert store.finalize(run_id, "owner", 1, now) is None  # a task is pending
    (task,) = claim(store, "w", run_id, now=now)
    assert store.finalize(run_id, "owner", 1, now) is None  # it runs on a worker
    store.record("w", [Outcome(task, "failed", error="boom")], now)
    assert store.finalize(run_id, "owner", 1, now) == "failed"
    assert store.get_run(run_id).status == "failed"  # type: ignore[union-attr]


def test_of_two_overlapping_runs_admitted_at_once_exactly_one_is_created(stores: tuple[Store, Store]) -> None:
    first, second = stores
    created: list[int] = []
    refused: list[str] = []
    barrier = threading.Barrier(2)

    def refuse(active: list) -> None:  # type: ignore[type-arg]
        if any("load" in run.processors for run in active):
            raise RunConflict("already covered")

    def admit(store: Store) -> None:
        barrier.wait()
        try:
            run = store.admit_run(refuse, processors=["load"], start_date="2024-01-01", end_date="2024-01-31",
                                  pid=1, host="h")  # fmt: skip
            created.append(run.id)
        except RunConflict as exc:
            refused.append(exc.message)

    for _ in range(5):
        created.clear()
        refused.clear()
        for run in first.list_runs(limit=None):
            first.update_run(run.id, status="succeeded")
        threads = [threading.Thread(target=admit, args=(store,)) for store in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert (len(created), refused) == (1, ["already covered"])


def test_outcomes_read_what_was_written(stores: tuple[Store, Store]) -> None:
    first, second = stores
    run_id, _ = new_run(first, 4)
    now = utcnow()
    for task in claim(first, "a", run_id, limit=3, now=now):
        first.record("a", [Outcome(task, "succeeded", seconds=2.0)], now + dt.timedelta(seconds=2))
    assert second.progress([run_id])[run_id] == Counter({"succeeded": 3, "pending": 1})
    assert second.outcomes([run_id])[run_id] == {("load", "succeeded", None): 3, ("load", "pending", None): 1}
    assert [d for d, _, _ in second.succeeded_ranges("load", "2024-01-02", "2024-01-31")] == [
        "2024-01-02",
        "2024-01-03",
    ]


def test_claims_from_many_short_lived_threads_keep_no_connection_open(stores: tuple[Store, Store]) -> None:
    """Each thread gets its own connection; one whose thread has ended is closed."""
    first, _ = stores
    run_id, task_ids = new_run(first, 30)
    results: list[int] = []
    for _ in task_ids:
        thread = threading.Thread(target=lambda: results.extend(t.id for t in claim(first, "a", run_id)))
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive()
    assert sorted(results) == sorted(task_ids)
    assert len(first._held) <= 2  # noqa: SLF001 - the connections of ended threads were closed
