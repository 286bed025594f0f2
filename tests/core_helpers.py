"""Helpers for the core tests: read the real state DB with sqlite3, wait, and inspect processes.

Nothing here goes through runbook's own code: the tests judge runbook by what it left in the
SQLite file and in /proc.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of ``sql`` on the state DB as dicts (a fresh connection each time: never stale)."""
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def tasks(db: Path, run_id: int | None = None) -> list[dict[str, Any]]:
    where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    return query(db, f"SELECT * FROM task {where} ORDER BY id", params)


def run_row(db: Path, run_id: int) -> dict[str, Any]:
    return query(db, "SELECT * FROM run WHERE id = ?", (run_id,))[0]


def when(value: str | None) -> dt.datetime:
    """A stored UTC time (SQLite keeps ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    assert value is not None, "time not recorded"
    return dt.datetime.fromisoformat(value)


def days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def _proc_stats() -> Iterator[tuple[int, str, int]]:
    """(pid, state, process group) of every process on this machine."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(entry), fields[0], int(fields[2])


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    return any(p == pid and state != "Z" for p, state, _ in _proc_stats())


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process is in process group ``pgid``."""
    return any(group == pgid and state != "Z" for _, state, group in _proc_stats())


def stop_leftovers(root: Path) -> None:
    """Teardown: SIGKILL every process working in the workspace ``root`` (controllers and steps).

    Only processes whose current folder is inside ``root`` are touched: those this test started.
    """
    root = root.resolve()
    for pid, state, _ in _proc_stats():
        if pid == os.getpid() or state == "Z":
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def executions(path: Path) -> dict[tuple[str, str], int]:
    """How often each ``processor date`` line occurs in a file the steps append to."""
    found: dict[tuple[str, str], int] = {}
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        processor, date = line.split()
        found[(processor, date)] = found.get((processor, date), 0) + 1
    return found


LEDGER_STEP = Path(__file__).resolve().parent / "ledger_step.py"


def ledger_command(ledger: Path) -> str:
    """A ``command:`` (YAML flow list) that runs tests/ledger_step.py for a step, writing to ``ledger``."""
    return f'["{sys.executable}", "{LEDGER_STEP}", "{ledger}", "{{{{ processor }}}}", "{{{{ start }}}}", "{{{{ end }}}}"]'


@dataclass(frozen=True)
class Entry:
    kind: str  # start, end, fail or overlap
    processor: str
    date: str
    pid: int
    host: str
    at: float


def read_ledger(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        kind, processor, date, pid, host, at = line.split()
        found.append(Entry(kind, processor, date, int(pid), host, float(at)))
    return found


def ledger_spans(entries: list[Entry]) -> list[tuple[str, str, float, float | None]]:
    """(processor, date, start, end or None if it never ended) of each execution."""
    ends = {(e.pid, e.processor, e.date): e.at for e in entries if e.kind in ("end", "fail")}
    return [
        (e.processor, e.date, e.at, ends.get((e.pid, e.processor, e.date)))
        for e in entries
        if e.kind == "start"
    ]


def peak_concurrency(spans: list[tuple[str, str, float, float | None]]) -> int:
    """The most executions that ran at once (only those that ended are counted)."""
    edges = sorted(
        [(s, 1) for _, _, s, e in spans if e is not None] + [(e, -1) for _, _, _, e in spans if e is not None]
    )
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak
