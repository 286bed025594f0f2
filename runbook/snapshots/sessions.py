"""Sessions and notes as snapshots."""

from __future__ import annotations

from collections.abc import Iterable

from runbook.formatting import iso_utc
from runbook.kinds import NoteKind
from runbook.snapshots.model import NoteSnapshot, SessionSnapshot
from runbook.state.records import Note, WorkSession


def session_snapshot(session: WorkSession) -> SessionSnapshot:
    return SessionSnapshot(
        id=session.id,
        title=session.title,
        started_at=iso_utc(session.started_at),
        ended_at=iso_utc(session.ended_at),
        open=session.ended_at is None,
        handoff_path=session.handoff_path,
    )


def note_snapshot(note: Note) -> NoteSnapshot:
    return NoteSnapshot(
        id=note.id, kind=note.kind, text=note.text, at=iso_utc(note.at), session_id=note.session_id
    )


def note_groups(notes: Iterable[Note]) -> dict[str, list[NoteSnapshot]]:
    """Notes grouped by kind: fix, issue, decision, next (then any other kind), oldest first."""
    grouped: dict[str, list[NoteSnapshot]] = {kind.value: [] for kind in NoteKind}
    for note in notes:
        grouped.setdefault(note.kind, []).append(note_snapshot(note))
    return grouped
