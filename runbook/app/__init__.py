"""The application layer: every use case of a workspace, in one place.

The CLI parses options, calls one method of :class:`App`, and prints what it returns; the
dashboard and the MCP server do the same. Nothing below this layer prints or exits.

The use cases are grouped by subject in small modules, each a part of ``App``: runs (plan,
submit, execute), resume (resume, stop), adopt (a process started outside runbook), notify
(webhooks), workers, inspect (status, history, show, coverage, logs), checks
(validate, check history), sessions (sessions, notes, handoffs) and the demo; documents builds
the JSON documents of the CLI's ``--json`` from them (which the MCP server returns as well).
"""

from __future__ import annotations

from runbook.app.adopt import Adopted
from runbook.app.checks import Validation
from runbook.app.demo import DemoResult, prepare_demo_folder
from runbook.app.documents import Documents
from runbook.app.resume import Resumable, Resumed
from runbook.app.runs import Planned, RunRequest
from runbook.app.sessions import NOTE_KINDS, Report

__all__ = [
    "NOTE_KINDS", "Adopted", "App", "DemoResult", "Planned", "Report", "Resumable", "Resumed", "RunRequest", "Validation",
    "prepare_demo_folder",
]  # fmt: skip


class App(Documents):
    """Plans, runs, resumes, stops, inspects, validates and hands off the runs of one workspace."""
