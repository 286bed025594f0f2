"""Numbered work sessions and the notes written during them.

Session numbers are the ids of :class:`~runbook.state.models.WorkSession` rows, so they continue
across the workspace's life ("Session 52"). At most one session is open; runs started while it is
open belong to it (``Runner.submit``), and so do notes. Ending a session writes its handoff
report; work done outside any session shows up in the next session's report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from runbook.errors import UsageError
from runbook.handoff.context import Scope
from runbook.handoff.sections import NOTE_KINDS
from runbook.state.models import Note, WorkSession, utcnow
from runbook.state.store import Store

__all__ = ["NOTE_KINDS", "add_note", "end_session", "start_session"]


def start_session(store: Store, title: str = "", *, now: dt.datetime | None = None) -> WorkSession:
    """Open the next numbered session; refuse while another is open."""
    current = store.open_session()
    if current is not None:
        raise UsageError(
            f"session {current.id} is already open (started {current.started_at:%Y-%m-%d %H:%M} UTC): "
            "end it first with `runbook session end`"
        )
    session = store.add(WorkSession(title=title.strip(), started_at=now or utcnow()))
    store.add_event(
        "session_started", f"session {session.id} started" + (f": {session.title}" if session.title else "")
    )
    return session


def add_note(store: Store, text: str, kind: str = "issue", *, now: dt.datetime | None = None) -> Note:
    """Record a note in the open session (or, with none open, for the next handoff)."""
    if kind not in NOTE_KINDS:
        raise UsageError(f"unknown note kind {kind!r} (use {', '.join(NOTE_KINDS)})")
    text = text.strip()
    if not text:
        raise UsageError(
            "a note needs text, e.g. runbook note --kind fix 'usage_rate now comes from team stats'"
        )
    session = store.open_session()
    note = Note(session_id=session.id if session else None, kind=kind, text=text, at=now or utcnow())
    return store.add(note)


def end_session(
    store: Store, write_handoff: Callable[[Scope], str], *, now: dt.datetime | None = None
) -> tuple[WorkSession, str]:
    """Close the open session after ``write_handoff`` wrote its report; return it and the path.

    The report is written first, as of the session's end: if that fails the session stays open.
    """
    current = store.open_session()
    if current is None:
        raise UsageError("no open session: start one with `runbook session start`")
    assert current.id is not None
    now = now or utcnow()
    ended = current.model_copy(update={"ended_at": now})
    path = write_handoff(Scope(ended, store.previous_session_end(before_id=current.id), now))
    store.end_session(current.id, now, path)
    store.add_event("session_ended", f"session {current.id} ended; handoff: {path}")
    ended.handoff_path = path
    return ended, path
