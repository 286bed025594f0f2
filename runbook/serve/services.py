"""What ``runbook serve`` keeps between requests: application objects, the calendar and the code
versions, and the background services it runs from start-up to shutdown.

Requests are answered on worker threads, each with an :class:`~runbook.app.App` of its own from
a small pool (a state store connection is not shared between threads). The calendar of a
``calendar: query:`` and the code versions of ``version: {command: ...}`` are read at most every
:data:`CACHE_SECONDS`: the warehouse is opened for the query and closed at once, so the dashboard
never holds a DuckDB file that a run needs to write.

The handoff page, the costliest (every processor over the whole calendar, rendered as Markdown
then HTML), is kept once rendered (:class:`Kept`): for as long as the store's fingerprint
(:meth:`~runbook.state.queries.Queries.fingerprint`), the code versions and the workspace's
templates stay the same, and at most :data:`CACHE_SECONDS`, the age of the calendar and versions
it shows anyway. The page says when it was generated.

**The seam for background work.** :func:`background_services` lists what the server starts
beside the dashboard (the watcher that sends notifications for interrupted and stalled runs, for
one). Each is a :class:`BackgroundService`: ``start()`` returns at once and runs the work on a
thread of its own, ``stop()`` ends it and returns when it has ended. The server starts them after
it has bound its address and stops them, in reverse order, before it exits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Protocol

from runbook.engine.calendar import Calendar
from runbook.errors import RunbookError

if TYPE_CHECKING:
    from runbook.app import App
    from runbook.workspace import Workspace

CACHE_SECONDS = 60.0
RETRY_SECONDS = 30.0  # after a calendar query failed (the warehouse busy), before trying again


class BackgroundService(Protocol):
    """Work that runs beside the dashboard for as long as the server does."""

    name: str

    def start(self) -> None:
        """Begin, on a thread of its own; return at once."""

    def stop(self) -> None:
        """End, and return when ended."""


def background_services(workspace: Workspace) -> list[BackgroundService]:
    """The services ``runbook serve`` starts for ``workspace``: the notification watcher when
    runbook.yaml has ``notify:`` targets (it sends what no controller is alive to send)."""
    from runbook.app.notify import notification_services

    return list(notification_services(workspace))


class Apps:
    """A pool of application objects, one per request at a time."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._idle: list[App] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[App]:
        from runbook.app import App

        with self._lock:
            app = self._idle.pop() if self._idle else App(self.workspace)
        keep = False
        try:
            yield app
            # A store that did not exist yet is looked for again by the next request.
            keep = app.reader() is not None
        finally:
            app.close_warehouse()  # never held between requests
            if keep:
                with self._lock:
                    self._idle.append(app)
            else:
                app.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for app in idle:
            app.close()


class Reads:
    """The calendar and the code versions, shared by every request for :data:`CACHE_SECONDS`."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._lock = threading.Lock()
        self._calendars: list[tuple[dt.date, dt.date, float, Calendar]] = []
        self._failed: tuple[float, RunbookError] | None = None
        self._versions: tuple[float, dict[str, str]] | None = None

    def calendar(self, app: App, start: dt.date, end: dt.date) -> Calendar:
        """The calendar covering [start, end]: runbook.yaml's, with the query's active dates."""
        config = self.workspace.config
        if not config.calendar.query:
            return Calendar(config.calendar)
        now = time.monotonic()
        with self._lock:
            for first, last, at, calendar in self._calendars:
                if first <= start and end <= last and now - at < CACHE_SECONDS:
                    return calendar
            if self._failed is not None and now - self._failed[0] < RETRY_SECONDS:
                raise self._failed[1]
            # One query for the whole configured range serves every smaller heat map.
            first = min(start, config.calendar.start or start)
            last = max(end, config.calendar.end or end)
            try:
                calendar = app.calendar(first, last)
            except RunbookError as error:
                self._failed = (now, error)
                raise
            finally:
                app.close_warehouse()
            self._failed = None
            self._calendars = [entry for entry in self._calendars if now - entry[2] < CACHE_SECONDS]
            self._calendars.append((first, last, now, calendar))
            return calendar

    def versions(self) -> dict[str, str] | None:
        """The current code versions, or None to let the caller resolve them (with warnings)."""
        from runbook.engine.versions import resolve_versions

        now = time.monotonic()
        with self._lock:
            if self._versions is not None and now - self._versions[0] < CACHE_SECONDS:
                return dict(self._versions[1])
            config = self.workspace.config
            try:
                found = resolve_versions(config, list(config.processors), str(self.workspace.root))
            except RunbookError:
                return None
            self._versions = (now, found)
            return dict(found)


class Kept:
    """The newest rendering of one page, with the key it was made for and when it was made."""

    def __init__(self, max_age: float = CACHE_SECONDS) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._entry: tuple[Hashable, float, dt.datetime, str] | None = None

    def get(self, key: Hashable) -> tuple[str, dt.datetime] | None:
        """(the page, when it was generated) if it was made for ``key`` less than ``max_age`` ago."""
        with self._lock:
            entry = self._entry
        if entry is None or entry[0] != key or time.monotonic() - entry[1] >= self.max_age:
            return None
        return entry[3], entry[2]

    def put(self, key: Hashable, page: str, generated_at: dt.datetime) -> None:
        with self._lock:
            self._entry = (key, time.monotonic(), generated_at, page)
