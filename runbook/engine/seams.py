"""The seams of the controller: who watches a run, who judges its checks, who says data is ready.

The CLI passes progress bars as the :class:`Observer`; ``runbook.checks`` implements the
:class:`Gatekeeper`, ``runbook.readiness`` the :class:`Readiness`, and ``runbook.notify`` the
:class:`Notices`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol


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
        """Run the processor's checks, store their results, return messages of failed blocking ones."""
        ...


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
