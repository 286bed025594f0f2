"""A step for concurrency tests: it writes what happens to it into a ledger the tests read.

    python ledger_step.py LEDGER PROCESSOR START END

Each execution appends ``start``, then ``end`` (or nothing, if it is killed) with its PID, the
host identity runbook gave it and a timestamp. While it runs it holds an exclusive ``flock`` on
a lock file per processor and date: an execution that finds the lock taken writes ``overlap`` —
two executions of one date at the same time, which runbook must never allow. The lock is released
by the kernel when the process dies, kill -9 included.

The step sleeps ``LEDGER_SLEEP`` seconds (default 0.2); ``LEDGER_FAIL`` (a processor name, or
``PROCESSOR:DATE``) makes that step fail; ``LEDGER_TERM_EXIT0`` makes it end with exit 0 shortly
after SIGTERM (a step that completes during a stop's grace period).
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path


def note(ledger: Path, *fields: str) -> None:
    line = " ".join([*fields, str(os.getpid()), os.environ.get("RUNBOOK_HOST", "-"), f"{time.time():.6f}"])
    with ledger.open("a", encoding="utf-8") as out:  # one short append: atomic on Linux
        out.write(line + "\n")


def main() -> int:
    ledger, processor, start = Path(sys.argv[1]), sys.argv[2], sys.argv[3]  # argv[4]: the end date
    locks = ledger.parent / "locks"
    locks.mkdir(exist_ok=True)
    handle = (locks / f"{processor}-{start}").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note(ledger, "overlap", processor, start)
        return 1
    if os.environ.get("LEDGER_TERM_EXIT0"):

        def finish(_signum: int, _frame: object) -> None:
            time.sleep(0.3)
            note(ledger, "end", processor, start)
            os._exit(0)

        signal.signal(signal.SIGTERM, finish)
    note(ledger, "start", processor, start)
    time.sleep(float(os.environ.get("LEDGER_SLEEP", "0.2")))
    failing = os.environ.get("LEDGER_FAIL", "")
    if failing and failing in (processor, f"{processor}:{start}"):
        note(ledger, "fail", processor, start)
        return 3
    note(ledger, "end", processor, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
