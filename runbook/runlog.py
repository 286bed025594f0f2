"""The one log file of a run: every step's output, tagged with processor, date and attempt."""

from __future__ import annotations

import datetime as dt
import threading
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
