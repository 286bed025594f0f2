"""The notification outbox on a real SQLite file and the real PostgreSQL server: the insert that
claims an event, the lease that hands it over, the watcher that takes what a dead process left,
and one delivery per event however many processes race for it."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from core_helpers import wait_for
from webhooks import ALWAYS_OK

from runbook.clock import utcnow
from runbook.config import RetryPolicy
from runbook.kinds import NotifyEvent
from runbook.notify import Notifier, Target
from runbook.redact import Redactor
from runbook.state.store import Store

SECRET = "hook-s3cr3t-token"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = (
        str(request.getfixturevalue("pg_url"))
        if request.param == "postgres"
        else f"sqlite:///{tmp_path / 'state' / 'runbook.db'}"
    )
    opened = Store.open(url)
    yield opened
    opened.close()


def a_run(store: Store) -> int:
    run = store.create_run(processors=["a"], start_date="2024-01-01", end_date="2024-01-02", status="running")
    store.add_tasks(run.id, [{"processor": "a", "date": "2024-01-01", "end_date": "2024-01-01"}])
    return run.id


def target(url: str, *, on: frozenset[str] = frozenset({"interrupted", "throttled", "failed"})) -> Target:
    return Target("notify.0", f"{url}/{SECRET}", on, "json", 60.0, RetryPolicy(attempts=1, delay=0.1), 5.0)


def notifier(store: Store, hook: Any) -> Notifier:
    return Notifier(store, [target(hook.url)], workspace="w", redact=Redactor([f"{hook.url}/{SECRET}"]))


def claim(store: Store, key: str, holder: str, lease_until: dt.datetime) -> int | None:
    return store.claim_notification(key=key, run_id=None, event="failed", target="notify.0", payload={"k": key},
                                    holder=holder, now=utcnow(), lease_until=lease_until)  # fmt: skip


def test_one_claim_wins_among_racing_processes(store: Store) -> None:
    later = utcnow() + dt.timedelta(minutes=2)
    won: list[int | None] = []
    barrier = threading.Barrier(6)

    def race(holder: str) -> None:
        barrier.wait()
        won.append(claim(store, "run:1:failed:e1:notify.0", holder, later))

    threads = [threading.Thread(target=race, args=(f"h{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([w for w in won if w is not None]) == 1
    (row,) = store.notifications()
    assert row.status == "pending" and row.payload == {"k": "run:1:failed:e1:notify.0"}


def test_a_delivery_left_by_a_dead_holder_is_taken_over_once_its_lease_is_over(
    store: Store, hooks: Any
) -> None:
    hook = hooks(ALWAYS_OK)
    held = claim(store, "still-held", "alive-elsewhere", utcnow() + dt.timedelta(minutes=2))
    left = claim(store, "left-over", "dead-holder", utcnow() - dt.timedelta(seconds=1))
    assert held is not None and left is not None
    watcher = notifier(store, hook)
    assert watcher.scan() == 1
    assert watcher.flush(30)
    assert [body["k"] for body in hook.bodies()] == ["left-over"]
    rows = {row.key: row for row in store.notifications()}
    assert rows["left-over"].status == "sent" and rows["left-over"].claimed_by == watcher.holder
    assert rows["still-held"].status == "pending" and rows["still-held"].claimed_by == "alive-elsewhere"
    assert watcher.scan() == 0  # nothing left to take


def test_throttled_is_sent_once_per_occurrence_with_its_details(store: Store, hooks: Any) -> None:
    hook = hooks(ALWAYS_OK)
    run_id = a_run(store)
    first, second = notifier(store, hook), notifier(store, hook)
    details = {
        "pool": "warehouse",
        "size": 4,
        "effective_size": 2,
        "reason": "rateLimitExceeded",
        "wait_seconds": 30,
    }
    for sender in (first, second, first):
        sender.emit(NotifyEvent.THROTTLED, run_id, occurrence="warehouse:2", details=details)
    second.emit(
        NotifyEvent.THROTTLED, run_id, occurrence="warehouse:1", details={**details, "effective_size": 1}
    )
    assert first.flush(30) and second.flush(30)
    bodies = {b["details"]["effective_size"]: b for b in hook.bodies("throttled")}
    assert sorted(bodies) == [1, 2] and hook.count() == 2
    assert (
        bodies[2]["details"] == details
        and bodies[2]["key"] == f"run:{run_id}:throttled:e0:warehouse:2:notify.0"
    )
    assert "throttled on pool warehouse (4 -> 2 slots): rateLimitExceeded" in bodies[2]["summary"]


def test_an_interrupted_run_found_by_two_watchers_is_sent_once(store: Store, hooks: Any) -> None:
    hook = hooks(ALWAYS_OK)
    run_id = a_run(store)
    store.update_run(
        run_id, pid=2**22 + 12345, host=__import__("socket").gethostname(), heartbeat_at=utcnow()
    )
    watchers = [notifier(store, hook) for _ in range(3)]
    barrier = threading.Barrier(3)

    def scan(watcher: Notifier) -> None:
        barrier.wait()
        watcher.scan()

    threads = [threading.Thread(target=scan, args=(w,)) for w in watchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for watcher in watchers:
        assert watcher.flush(30)
        watcher.scan()  # again: nothing new
        assert watcher.flush(30)
    (body,) = wait_for(lambda: hook.bodies("interrupted"))
    assert body["details"]["reason"].startswith("its controller (PID 4206649 on ")
    assert body["run"]["status"] == "interrupted" and hook.count() == 1
    assert SECRET not in str(store.notifications()) and SECRET not in str(store.events())
