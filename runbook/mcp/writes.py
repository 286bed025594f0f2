"""The tools that act (``runbook mcp --allow-write``): start, resume and stop runs, validate, notes
and sessions. Each does what its CLI command with ``--json`` does, in the background where the
command would be detached.

No ``from __future__ import annotations`` here: the SDK reads the tools' signatures at runtime.
"""

import contextlib
import datetime as dt
import os
import shlex
import threading
from collections.abc import Callable
from typing import Annotated, Literal

from mcp.types import CallToolResult
from pydantic import Field

from runbook.app import App, RunRequest
from runbook.app.documents import (
    Document,
    note_document,
    resumed_document,
    session_document,
    started_document,
    stopped_document,
    validation_document,
)
from runbook.mcp.common import OptionalDate, Processors, RunId, zone


class WriteTools:
    """The write tools; :class:`runbook.mcp.server.Tools` gives them ``answer``."""

    answer: Callable[[Callable[[App], Document]], CallToolResult]

    def start_run(
        self,
        processors: Processors = None,
        start: OptionalDate = None,
        end: OptionalDate = None,
        workers: Annotated[int | None, Field(ge=1, le=256, description="Steps at once.")] = None,
        no_resume: Annotated[bool, Field(description="Rebuild dates already built with this code.")] = False,
        only_gaps: Annotated[bool, Field(description="Only dates never built.")] = False,
        only_stale: Annotated[
            bool, Field(description="Only dates built with an older code version.")
        ] = False,
        force: Annotated[bool, Field(description="Start even if a live run covers the same work.")] = False,
    ) -> CallToolResult:
        """Plan and start a run in the background (always detached), like `runbook run --detach
        --json`: returns its run id, controller PID and log path, and the plan's warnings."""
        line = run_command_line(
            processors or [], start, end, workers, no_resume, only_gaps, only_stale, force
        )
        options = {
            "workers": workers,
            "no_resume": no_resume,
            "only_gaps": only_gaps,
            "only_stale": only_stale,
        }

        def work(app: App) -> Document:
            wanted = RunRequest(processors=list(processors or []), start=start, end=end, resume=not no_resume,
                                only_gaps=only_gaps, only_stale=only_stale, workers=workers, force=force,
                                command_line=line, options=options)  # fmt: skip
            planned = app.plan(wanted)
            created = app.submit(wanted, planned)
            pid = app.spawn(created.id)
            reap(pid)
            return {**started_document(created, pid), "warnings": [w.message for w in planned.warnings]}

        return self.answer(work)

    def resume_run(
        self,
        run_id: Annotated[
            int | None, Field(description="A run (also a failed one); default: every interrupted run.")
        ] = None,
    ) -> CallToolResult:
        """Continue interrupted runs (or RUN_ID, reopening its failed and blocked tasks) in the
        background: `runbook resume [RUN_ID] --detach --json`. A run whose controller is alive is
        not started twice (the CLI's exit-5 line comes back as an error)."""

        def work(app: App) -> Document:
            resumed = app.resume(run_id, detach=True)
            for _, pid in resumed.detached:
                reap(pid)
            return resumed_document(resumed)

        return self.answer(work)

    def stop_run(self, run_id: RunId) -> CallToolResult:
        """Stop a run gracefully: in-flight steps end, the run is interrupted and stays resumable
        (`runbook stop RUN_ID`; `message` is the line it prints)."""
        return self.answer(lambda app: stopped_document(app.stop(run_id)))

    def validate(
        self,
        processors: Processors = None,
        start: OptionalDate = None,
        end: OptionalDate = None,
    ) -> CallToolResult:
        """Run the checks of the processors now over the range and store the results: `runbook
        validate --json` (`passed` false with `blocking_failures` where the CLI exits 3)."""

        def work(app: App) -> Document:
            found = app.validate(list(processors or []), start, end)
            if found.config_error is not None:
                raise found.config_error
            return validation_document(found)

        return self.answer(work)

    def add_note(
        self,
        text: Annotated[str, Field(description="What you learned, fixed, decided, or what comes next.")],
        kind: Annotated[
            Literal["fix", "issue", "decision", "next"],
            Field(description="fix (applied), issue (known), decision (taken), next (step)."),
        ] = "issue",
    ) -> CallToolResult:
        """Record a note in the open session (or for the next handoff): `runbook note --json`."""
        return self.answer(lambda app: note_document(app.note(text, kind)))

    def session_start(
        self, title: Annotated[str, Field(description="What this session is about.")] = ""
    ) -> CallToolResult:
        """Open the next numbered session: `runbook session start --json`."""
        return self.answer(lambda app: session_document(app.session_start(title)))

    def session_end(self) -> CallToolResult:
        """Close the open session and write its handoff report to handoffs/: `runbook session end
        --json` (`handoff` is its path in the workspace)."""

        def work(app: App) -> Document:
            ended, report = app.session_end(tz_name=zone(app))
            return session_document(ended, report)

        return self.answer(work)


def run_command_line(processors: list[str], start: dt.date | None, end: dt.date | None, workers: int | None,
                     no_resume: bool, only_gaps: bool, only_stale: bool, force: bool) -> str:  # fmt: skip
    """The `runbook run` line that does what a start_run call did (recorded with the run)."""
    args = ["runbook", "run", *processors]
    args += ["--start", start.isoformat()] if start else []
    args += ["--end", end.isoformat()] if end else []
    args += ["--workers", str(workers)] if workers else []
    flags = (
        ("--no-resume", no_resume),
        ("--only-gaps", only_gaps),
        ("--only-stale", only_stale),
        ("--force", force),
    )
    args += [flag for flag, on in flags if on]
    return shlex.join([*args, "--detach"]) + "  # via runbook mcp"


def reap(pid: int) -> None:
    """Collect the detached controller's exit status when it ends (this server outlives it), so
    that it does not stay behind as a zombie."""

    def wait() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    threading.Thread(target=wait, name=f"reap-{pid}", daemon=True).start()
