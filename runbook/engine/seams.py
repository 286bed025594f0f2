"""The seams of the controller: who watches a run, who judges its checks, who says data is ready.

The CLI passes progress bars as the :class:`Observer`; ``runbook.checks`` implements the
:class:`Gatekeeper`, ``runbook.readiness`` the :class:`Readiness`, and ``runbook.notify`` the
:class:`Notices`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runbook.state.records import Gate, Run


class Observer(Protocol):
    """Receives progress from the controller (the CLI draws bars; tests may count)."""

    def started(self, run_id: int, totals: dict[str, Counter[str]]) -> None: ...
    def progress(self, totals: dict[str, Counter[str]]) -> None:
        """The run's task counts by processor and status, whoever did the work (every second)."""
        ...

    def task_finished(self, processor: str, status: str) -> None: ...
    def message(self, text: str) -> None: ...
    def finished(self) -> None: ...


class QuietObserver:
    def started(self, run_id: int, totals: dict[str, Counter[str]]) -> None:
        pass

    def progress(self, totals: dict[str, Counter[str]]) -> None:
        pass

    def task_finished(self, processor: str, status: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def finished(self) -> None:
        pass


class Gatekeeper(Protocol):
    """Runs validation checks (see ``runbook.checks``); the controller only needs this much."""

    def blocking(self, processor: str) -> bool: ...
    def has_checks(self, processor: str) -> bool: ...
    def run_checks(self, processor: str, run_id: int, start: dt.date, end: dt.date) -> list[str]:
        """Run the processor's range-wide checks, store their results, return messages of failed
        blocking ones."""
        ...

    def run_date_checks(
        self,
        processor: str,
        run_id: int,
        start: dt.date,
        end: dt.date,
        dates: Collection[dt.date] | None = None,
    ) -> dict[str, str]:
        """Run the processor's per-date checks over a window (judging ``dates`` only, when given),
        store their results, return the dates a blocking one failed on, with what failed."""
        ...


class _GateStore(Protocol):
    def succeeded_dates(self, run_id: int, processor: str, start: str, end: str) -> set[str]: ...


def judge_gate(
    gatekeeper: Gatekeeper, store: _GateStore, gate: Gate, run: Run
) -> tuple[list[str], dict[str, str]]:
    """Run a gate's checks: the range-wide ones over the run's range, or for a per-date gate the
    per-date ones over its window, judging the dates whose tasks succeeded in this run.
    Returns (failures of blocking range-wide checks, failed dates of blocking per-date checks)."""
    if gate.per_date:
        built = store.succeeded_dates(gate.run_id, gate.processor, gate.start_date, gate.end_date)
        failed = gatekeeper.run_date_checks(
            gate.processor,
            gate.run_id,
            dt.date.fromisoformat(gate.start_date),
            dt.date.fromisoformat(gate.end_date),
            {dt.date.fromisoformat(day) for day in built},
        )
        return [], failed
    failures = gatekeeper.run_checks(
        gate.processor,
        gate.run_id,
        dt.date.fromisoformat(run.start_date),
        dt.date.fromisoformat(run.end_date),
    )
    return failures, {}


def gate_dates_message(gate: Gate, failed_dates: Mapping[str, str]) -> str:
    """``blocking check failed on pgs for 3 date(s) (2024-11-05, ...): downstream of those dates blocked``."""
    days = sorted(failed_dates)
    shown = ", ".join(days[:5]) + (f", and {len(days) - 5} more" if len(days) > 5 else "")
    first = failed_dates[days[0]]
    return (
        f"blocking check failed on {gate.processor} for {len(days)} date(s) ({shown}): the downstream of "
        f"those dates is blocked, other dates go on; {first}"
    )


class Readiness(Protocol):
    def missing(self, processor: str, start: str, end: str) -> str | None:
        """None when the processor's upstream tables have rows for the dates, else what is missing."""
        ...


class Notices(Protocol):
    """Sends a run's events to the ``notify:`` webhooks (``runbook.notify.Notifier``) in the
    background: no call waits for the network.

    Events are the values of :class:`runbook.kinds.NotifyEvent`. The same event of the same run,
    ``epoch`` and ``occurrence`` is sent once, whichever process emits it. ``throttled`` is emitted
    by whatever slows a run down on the warehouse, with ``details`` ``{"pool", "size",
    "effective_size", "reason", "wait_seconds"}`` (docs/json-notify.md) and an ``occurrence`` that
    tells one slow-down from the next (``"warehouse:2"``: pool and effective size).
    """

    def emit(
        self,
        event: str,
        run_id: int,
        *,
        epoch: int | None = None,
        occurrence: str = "",
        details: dict[str, Any] | None = None,
    ) -> None: ...

    def watch(self, run_ids: Sequence[int]) -> None:
        """Look for stalls of these runs."""
        ...

    def flush(self, timeout: float = ...) -> bool:
        """Wait a bounded time for deliveries under way; the rest is left to the next watcher."""
        ...
