"""Every read of the state store, as plain SQL over a :class:`~runbook.state.connect.Database`.

The same queries serve the read model (a short-lived connection opened by ``runbook status``,
without SQLAlchemy) and the writers (the controller reads its tasks through them). Each answers
in a few statements that aggregate on the indexes, so they stay fast with a million task rows
(``bench/history_scale.py``).

:class:`Queries` is the one class callers use; it combines the reads of runs and their task
counts (``run_queries.py``), of tasks (``task_queries.py``), and of events, check results,
sessions and notes (``journal_queries.py``).
"""

from __future__ import annotations

from runbook.state.connect import Database
from runbook.state.journal_queries import JournalQueries
from runbook.state.run_queries import RunQueries
from runbook.state.task_queries import TaskQueries


class Queries(RunQueries, TaskQueries, JournalQueries):
    """Reads of runs, tasks, events, check results, sessions and notes."""

    def __init__(self, db: Database) -> None:
        self.db = db
