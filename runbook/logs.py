"""Reading a run's log, optionally following it while the run is active."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

from runbook.state.models import ACTIVE_RUN_STATUSES, Run
from runbook.state.store import Store

FOLLOW_POLL_SECONDS = 0.5


def stream_log(
    store: Store, run: Run, path: Path, *, follow: bool = False, tail: int | None = None
) -> Iterator[str]:
    """Yield the log's lines; with ``follow``, keep yielding until the run is no longer active."""
    if not path.exists():
        if not follow:
            return
        while not path.exists():
            time.sleep(FOLLOW_POLL_SECONDS)
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
        yield from (line.rstrip("\n") for line in (collections.deque(lines, tail) if tail else lines))
        if not follow:
            return
        assert run.id is not None
        while True:
            line = handle.readline()
            if line:
                yield line.rstrip("\n")
                continue
            current = store.get_run(run.id)
            if current is None or current.status not in ACTIVE_RUN_STATUSES:
                yield from (rest.rstrip("\n") for rest in handle.readlines())
                return
            time.sleep(FOLLOW_POLL_SECONDS)
