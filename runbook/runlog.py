"""The one log file of a run: every step's output, tagged with processor, date and attempt.

:class:`RunLog` writes it (thread-safe, secrets masked); :func:`read_log` reads or follows it.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from runbook.redact import NO_SECRETS, Redactor


class RunLog:
    """A thread-safe, line-buffered, append-only UTF-8 log with secrets masked."""

    def __init__(self, path: Path, redactor: Redactor = NO_SECRETS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._redact = redactor
        self._lock = threading.Lock()
        self._file: TextIO = path.open("a", encoding="utf-8", errors="replace", buffering=1)

    def write(self, line: str, tag: str = "") -> None:
        text = self._redact(line.rstrip("\n"))
        with self._lock:
            self._file.write(f"{tag} | {text}\n" if tag else f"{text}\n")

    def header(self, processor: str, start: str, end: str, attempt: int) -> str:
        """Write the line that opens a step's output; return the tag its lines carry."""
        span = start if start == end else f"{start}..{end}"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.write(f"==> {stamp} {processor} {span} attempt {attempt}")
        return f"{processor} {span} #{attempt}"

    def event(self, message: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.write(f"--- {stamp} {message}")

    def close(self) -> None:
        with self._lock:
            self._file.close()


FOLLOW_POLL_SECONDS = 0.5


def read_log(
    path: Path, *, tail: int | None = None, follow: Callable[[], bool] | None = None
) -> Iterator[str]:
    """Yield the log's lines (the last ``tail`` ones); with ``follow``, keep yielding new lines
    while ``follow()`` says the run is still active, then the rest."""
    if not path.exists():
        if follow is None:
            return
        while not path.exists():
            if not follow():
                return
            time.sleep(FOLLOW_POLL_SECONDS)
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
        yield from (line.rstrip("\n") for line in (collections.deque(lines, tail) if tail else lines))
        if follow is None:
            return
        while True:
            line = handle.readline()
            if line:
                yield line.rstrip("\n")
                continue
            if not follow():
                yield from (rest.rstrip("\n") for rest in handle.readlines())
                return
            time.sleep(FOLLOW_POLL_SECONDS)


def read_chunk(path: Path, offset: int, max_chars: int) -> dict[str, object]:
    """At most ``max_chars`` characters of the log from byte ``offset`` (from the end when negative),
    and where to continue: ``{"offset", "next_offset", "size", "eof", "text"}``, offsets in bytes of
    the file. A run's log only grows, so a ``next_offset`` stays valid while it is written."""
    size = path.stat().st_size if path.exists() else 0
    start = max(size + offset, 0) if offset < 0 else min(offset, size)
    if start == size or max_chars <= 0:
        return {"offset": start, "next_offset": start, "size": size, "eof": start >= size, "text": ""}
    with path.open("rb") as handle:
        handle.seek(start)
        raw = handle.read(max_chars * 4)
    lead = 0
    while lead < len(raw) and lead < 3 and 0x80 <= raw[lead] < 0xC0:
        lead += 1  # inside a character: start at the next one
    text = raw[lead:].decode("utf-8", errors="surrogateescape")
    # A character cut at the end of what was read waits for the next call.
    if start + len(raw) < size:
        cut = len(text)
        while cut > 0 and "\udc80" <= text[cut - 1] <= "\udcff" and len(text) - cut < 3:
            cut -= 1
        text = text[:cut]
    text = text[:max_chars]
    used = lead + len(text.encode("utf-8", errors="surrogateescape"))
    shown = text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return {
        "offset": start,
        "next_offset": start + used,
        "size": size,
        "eof": start + used >= size,
        "text": shown,
    }


def task_lines(path: Path, processor: str, start: str, end: str, *, limit: int) -> tuple[list[str], int]:
    """(the last ``limit`` lines of the log written by ``processor`` over start..end, its
    attempts' opening lines included; how many earlier ones were left out). One pass over the
    file, whatever its size."""
    span = start if start == end else f"{start}..{end}"
    tag, opening = f"{processor} {span} #", f" {processor} {span} attempt "
    kept: collections.deque[str] = collections.deque(maxlen=limit)
    seen = 0
    if not path.exists():
        return [], 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(tag) or (line.startswith("==> ") and opening in line):
                kept.append(line.rstrip("\n"))
                seen += 1
    return list(kept), seen - len(kept)
