"""Sessions, notes and handoff reports.

Session numbers are the ids of work sessions, so they continue across the workspace's life
("Session 52"). At most one session is open; runs started while it is open belong to it, and so
do notes. Ending a session writes its handoff report; work done outside any session shows up in
the next session's report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.app.base import Base
from runbook.clock import utcnow
from runbook.errors import UsageError
from runbook.kinds import NoteKind
from runbook.state.records import Note, WorkSession

NOTE_KINDS = tuple(kind.value for kind in NoteKind)


@dataclass(frozen=True)
class Report:
    """A rendered handoff and where it went (``-`` for standard output)."""

    text: str
    path: str | None
    session_id: int | None


class Sessions(Base):
    """The session, note and handoff use cases (mixed into :class:`runbook.app.App`)."""

    def session_start(self, title: str = "", *, now: dt.datetime | None = None) -> WorkSession:
        """Open the next numbered session; refuse while another is open (one conditional insert)."""
        session = self.store.start_session(title.strip(), now or utcnow())
        label = f"session {session.id} started" + (f": {session.title}" if session.title else "")
        self.store.add_event("session_started", label)
        return session

    def note(self, text: str, kind: str = NoteKind.ISSUE, *, now: dt.datetime | None = None) -> Note:
        """Record a note in the open session (or, with none open, for the next handoff)."""
        if kind not in NOTE_KINDS:
            raise UsageError(f"unknown note kind {kind!r} (use {', '.join(NOTE_KINDS)})")
        text = text.strip()
        if not text:
            raise UsageError(
                "a note needs text, e.g. runbook note --kind fix 'usage_rate now comes from team stats'"
            )
        session = self.store.open_session()
        return self.store.add_note(
            session.id if session else None, kind, self.redactor(text), now or utcnow()
        )

    def handoff_context(
        self,
        *,
        session_id: int | None = None,
        tz_name: str | None = None,
        now: dt.datetime | None = None,
        scope: Any = None,
        calendar_for: Any = None,
        versions: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], dt.tzinfo]:
        """The handoff report as data (what ``--format json`` prints) and the report's time zone
        (``calendar_for``, ``versions``: as :meth:`heatmap` takes them)."""
        from runbook.reports import build_context, resolve_scope, resolve_timezone

        now = now or utcnow()
        tz, zone = resolve_timezone(tz_name, dict(self.workspace.environ))
        q = self.reader()
        # One state of the store for the whole report: a step that ends while it is read is
        # either running or built in it, never neither.
        with q.db.snapshot() if q is not None else nullcontext():
            scope = scope or resolve_scope(q, now, session_id)
            context = build_context(
                self.workspace,
                q,
                now=now,
                timezone=zone,
                scope=scope,
                calendar_for=calendar_for or self.calendar,
                versions=versions,
            )
        return context, tz

    def handoff(
        self,
        *,
        format: str = "markdown",
        template: str | None = None,
        session_id: int | None = None,
        tz_name: str | None = None,
        out: str | None = None,
        now: dt.datetime | None = None,
        scope: Any = None,
    ) -> Report:
        """Render the handoff and write it: to ``out`` (``-`` = return it for stdout), else markdown
        to ``handoffs/YYYY-MM-DD-HHMM-session-N.md`` and the other formats to stdout."""
        from runbook.reports import default_path, report_text

        now = now or utcnow()
        context, tz = self.handoff_context(session_id=session_id, tz_name=tz_name, now=now, scope=scope)
        session = context["session"]
        number = session["id"] if session else None
        if out is None and format != "markdown":
            out = "-"
        path = picture = None
        if out != "-":
            until = dt.datetime.fromisoformat(context["scope"]["until"].replace("Z", "+00:00"))
            path = Path(out) if out else default_path(self.workspace.handoffs_dir, until, tz, number)
            if format == "markdown" and context["heatmap"] is not None:
                # The picture goes beside the report, which links it by its file name.
                picture = path.with_name(f"{path.stem}-heatmap.svg")
                context["heatmap_image"] = picture.name
        text = report_text(
            context, format=format, template=template, templates_dir=self.workspace.templates_dir, tz=tz
        )
        if path is None:
            return Report(text, "-", number)
        path.parent.mkdir(parents=True, exist_ok=True)
        if picture is not None:
            from runbook.reports.heatmap import heatmap_svg

            svg = heatmap_svg(context["heatmap"], title=f"{self.config.name}: every processor by date")
            picture.write_bytes(svg.encode("utf-8"))
        path.write_bytes(text.encode("utf-8"))
        try:
            shown = str(path.resolve().relative_to(self.workspace.root))
        except ValueError:
            shown = str(path)
        return Report(text, shown, number)

    def session_end(
        self,
        *,
        out: str | None = None,
        template: str | None = None,
        tz_name: str | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[WorkSession, Report]:
        """Close the open session after writing its handoff, as of the session's end.

        The report is written first: if that fails the session stays open. Two ``session end``
        at once: the one whose conditional close loses says so.
        """
        from runbook.reports import Scope

        store = self.store
        current = store.open_session()
        if current is None:
            raise UsageError("no open session: start one with `runbook session start`")
        now = now or utcnow()
        ended = dataclasses.replace(current, ended_at=now)
        scope = Scope(ended, store.previous_session_end(before_id=current.id), now)
        report = self.handoff(
            format="markdown", template=template, tz_name=tz_name, out=out, now=now, scope=scope
        )
        if not store.end_session(current.id, now, report.path):
            raise UsageError(f"session {current.id} was ended by someone else meanwhile")
        store.add_event("session_ended", f"session {current.id} ended; handoff: {report.path}")
        return dataclasses.replace(ended, handoff_path=report.path), report
