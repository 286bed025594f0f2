"""Core handles on the mapped tables, for the statements of the store modules."""

from __future__ import annotations

from runbook.state.models import CheckResult, Event, Note, Run, Task, WorkSession

RUN = Run.__table__  # type: ignore[attr-defined]
TASK = Task.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]
CHECK = CheckResult.__table__  # type: ignore[attr-defined]
SESSION = WorkSession.__table__  # type: ignore[attr-defined]
NOTE = Note.__table__  # type: ignore[attr-defined]
