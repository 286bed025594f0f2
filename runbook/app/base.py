"""What every use case of a workspace shares: the workspace, its state store, its warehouse."""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING

from runbook.engine.calendar import Calendar
from runbook.errors import UsageError
from runbook.redact import Redactor
from runbook.state.connect import open_database
from runbook.state.queries import Queries
from runbook.state.records import Run
from runbook.workspace import Workspace

if TYPE_CHECKING:
    from runbook.engine.seams import Observer
    from runbook.notify import Notifier
    from runbook.state.store import Store
    from runbook.warehouse import Warehouse


class Base:
    """The workspace's parts, each opened on first use.

    Reading commands use :meth:`reader`, a plain connection that never creates a state store
    (None when there is none yet); writing ones use :attr:`store`, which creates it at head.
    """

    def __init__(self, workspace: Workspace, *, observer: Observer | None = None) -> None:
        self.workspace = workspace
        self.config = workspace.config
        self.observer = observer
        self.redactor = Redactor(workspace.secret_values())
        self._store: Store | None = None
        self._reader: Queries | None = None
        self._reader_opened = False
        self._warehouse: Warehouse | None = None
        self._warehouse_lock = threading.Lock()
        self._notifier: Notifier | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from runbook.state.store import Store

            self._store = Store.open(self.workspace.database_url)
        return self._store

    def reader(self) -> Queries | None:
        """Reads of the state store, or None when it does not exist yet (nothing is created)."""
        if self._store is not None:
            return self._store
        if not self._reader_opened:
            db = open_database(self.workspace.database_url)
            self._reader = Queries(db) if db is not None else None
            self._reader_opened = True
        return self._reader

    def get_run(self, run_id: int) -> Run:
        """The run ``run_id``, or one line saying it does not exist (exit 2)."""
        q = self.reader()
        run = q.get_run(run_id) if q is not None else None
        if run is None:
            raise UsageError(f"run {run_id} not found (see `runbook status`)")
        return run

    def warehouse(self) -> Warehouse:
        """The workspace's warehouse, opened once on first use (shared by worker threads)."""
        with self._warehouse_lock:
            if self._warehouse is None:
                from runbook.warehouse import open_warehouse

                self._warehouse = open_warehouse(
                    self.config.warehouse, self.workspace.root, self.workspace.environ
                )
            return self._warehouse

    def calendar(self, start: dt.date, end: dt.date) -> Calendar:
        """The calendar of [start, end]: runbook.yaml's off-days, plus the ``calendar: query:`` if any."""
        active = None
        if self.config.calendar.query:
            from runbook.warehouse import to_date

            rows = self.warehouse().query(self.config.calendar.query, {"start": start, "end": end})
            found = (to_date(next(iter(row.values()))) for row in rows)
            active = [day for day in found if day is not None]
        return Calendar(self.config.calendar, active)

    def close_warehouse(self) -> None:
        """Close the warehouse until its next use (a long-lived reader must not hold a DuckDB file
        that a run needs to write)."""
        with self._warehouse_lock:
            if self._warehouse is not None:
                self._warehouse.close()
                self._warehouse = None

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.close()
        if self._store is not None:
            self._store.close()
        if self._reader is not None:
            self._reader.db.close()
        if self._warehouse is not None:
            self._warehouse.close()
