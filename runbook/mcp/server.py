"""The tools of ``runbook mcp``, on the SDK's :class:`~mcp.server.MCPServer` (docs/mcp.md).

Each call loads runbook.yaml and opens the state store afresh, as a CLI command would, asks the
application layer for the document the CLI's ``--json`` prints, pages its long lists and returns
it as structured content (and as JSON text). A :class:`~runbook.errors.RunbookError` becomes a
tool error whose text is the CLI's line (``runbook: error: ...``). Tools run on the SDK's worker
threads, each with an :class:`~runbook.app.App` of its own.

No ``from __future__ import annotations`` here: the SDK reads the tools' signatures at runtime to
build their input schemas.
"""

import datetime as dt
import inspect
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from runbook.app import App, RunRequest
from runbook.app.documents import (
    LOG_CHARS,
    Document,
    plan_document,
)
from runbook.errors import RunbookError
from runbook.kinds import ACTIVE_RUN_STATUSES
from runbook.mcp.common import (
    Limit,
    Offset,
    OptionalDate,
    Processors,
    RunId,
    Statuses,
    failure,
    page_of,
    paged,
    success,
    zone,
)
from runbook.mcp.writes import WriteTools
from runbook.snapshots import document
from runbook.workspace import Workspace

WAIT_SECONDS = 50.0  # wait_for_run answers within this, finished or not
POLL_SECONDS = 1.0
LOOK_SECONDS = 0.5  # the time a look at the store may take, kept free before the deadline
HANDOFF_CHARS = 20_000
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

INSTRUCTIONS = """\
runbook controls long, date-by-date warehouse backfills of one workspace (its runbook.yaml).
Start with `handoff` (format brief): the overall state, what failed and why, and the next actions
with their exact commands. `status` lists live and recent runs; `get_run` shows one with failures
grouped by error; `get_logs` pages through a run's log; `wait_for_run` waits up to 50 s for a run
to end. Every result is the document of the CLI's --json (docs/json.md), with long lists paged:
`pages` gives each paged list's total and the next offset. Errors are the CLI's one line."""


class Tools(WriteTools):
    """The tools of one workspace: each call opens it afresh, as a CLI command would."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._handoffs: dict[tuple[str, int | None], str] = {}
        self._lock = threading.Lock()

    def answer(self, work: Callable[[App], Document]) -> CallToolResult:
        """``work``'s document as a tool result, or the CLI's line for a RunbookError."""
        try:
            app = App(Workspace.load(str(self.config_path)))
            try:
                data = work(app)
            finally:
                app.close()
        except RunbookError as error:
            return failure(error)
        return success(data)

    # -- reading -------------------------------------------------------------------------------

    def status(
        self,
        recent: Annotated[int, Field(ge=0, le=100, description="Latest finished runs to include.")] = 5,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> CallToolResult:
        """Live runs (queued, running, interrupted) with progress, rate, ETA, PID and liveness, then
        the latest finished ones: `runbook status --json`, its runs paged."""
        return self.answer(lambda app: paged(app.status_document(recent=recent), ["runs"], offset, limit))

    def list_runs(
        self,
        processor: Annotated[str | None, Field(description="Only runs that include it.")] = None,
        status: Annotated[Statuses | None, Field(description="Only runs in this stored status.")] = None,
        since: Annotated[dt.datetime | None, Field(description="Runs created since (UTC).")] = None,
        start: Annotated[
            dt.date | None, Field(description="Runs whose dates reach this date or later.")
        ] = None,
        end: Annotated[
            dt.date | None, Field(description="Runs whose dates reach this date or earlier.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Runs to return.")] = 20,
        offset: Offset = 0,
    ) -> CallToolResult:
        """Past runs, newest first, filtered: `runbook history --json`, paged (`total` counts every
        run that matches)."""

        def work(app: App) -> Document:
            found = app.history_document(processor=processor, status=status, since=since, start=start,
                                         end=end, limit=limit, offset=offset)  # fmt: skip
            total = found.pop("total")
            found["pages"] = {"runs": page_of(offset, limit, len(found["runs"]), total)}
            return found

        return self.answer(work)

    def get_run(
        self,
        run_id: RunId,
        tasks: Annotated[bool, Field(description="Also list the run's tasks (paged).")] = False,
        limit: Annotated[int, Field(ge=1, le=500, description="Items of each list to return.")] = 100,
        offset: Offset = 0,
    ) -> CallToolResult:
        """One run: per-processor progress, failures grouped by error (with error tails), blocked
        dates, checks, events (and tasks): `runbook show RUN_ID --json`, each list paged."""
        lists = ["failures", "blocked", "checks", "events", "tasks"]
        return self.answer(
            lambda app: paged(app.show_document(run_id, with_tasks=tasks), lists, offset, limit)
        )

    def get_logs(
        self,
        run_id: RunId,
        offset: Annotated[
            int,
            Field(
                description="Byte offset in the log to read from (next_offset of the last call); negative: from the end."
            ),
        ] = 0,
        max_chars: Annotated[
            int, Field(ge=1, le=LOG_CHARS, description="Characters to return at most.")
        ] = LOG_CHARS,
    ) -> CallToolResult:
        """A run's log (every step's output, tagged with processor, date and attempt), at most 20,000
        characters a call: continue from `next_offset` until `eof`; offset -20000 reads its end."""
        return self.answer(lambda app: app.log_document(run_id, offset=offset, max_chars=max_chars))

    def coverage(
        self,
        processor: Annotated[str, Field(description="A processor of runbook.yaml.")],
        start: OptionalDate = None,
        end: OptionalDate = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> CallToolResult:
        """Which dates of a processor are built, by which run and code version; gaps, stale ranges and
        failing checks: `runbook coverage PROCESSOR --json`, its lists paged."""
        lists = ["gaps", "stale", "failing_checks", "dates"]
        return self.answer(
            lambda app: paged(app.coverage_document(processor, start, end), lists, offset, limit)
        )

    def plan(
        self,
        processors: Processors = None,
        start: OptionalDate = None,
        end: OptionalDate = None,
        no_resume: Annotated[bool, Field(description="Rebuild dates already built with this code.")] = False,
        only_gaps: Annotated[bool, Field(description="Only dates never built.")] = False,
        only_stale: Annotated[
            bool, Field(description="Only dates built with an older code version.")
        ] = False,
        limit: Limit = 200,
        offset: Offset = 0,
    ) -> CallToolResult:
        """What a run would do, date by date (run, or skipped and why), with counts per processor.
        Records nothing: `runbook plan --json`, its dates paged."""
        wanted = RunRequest(processors=list(processors or []), start=start, end=end, resume=not no_resume,
                            only_gaps=only_gaps, only_stale=only_stale)  # fmt: skip
        return self.answer(lambda app: paged(plan_document(app.plan(wanted)), ["dates"], offset, limit))

    def check_history(
        self,
        check: Annotated[str | None, Field(description="A check name; all checks by default.")] = None,
        processor: Annotated[str | None, Field(description="Only checks of this processor.")] = None,
        per_check: Annotated[int, Field(ge=1, le=200, description="Latest results per check.")] = 20,
        limit: Annotated[int, Field(ge=1, le=200, description="Checks to return.")] = 50,
        offset: Offset = 0,
    ) -> CallToolResult:
        """Each check's values over time, oldest first: `runbook checks history --json --limit
        PER_CHECK`, its checks paged."""
        return self.answer(
            lambda app: paged(
                app.check_history_document(check, processor, per_check), ["checks"], offset, limit
            )
        )

    def handoff(
        self,
        format: Annotated[
            Literal["brief", "markdown", "json"], Field(description="brief: at most 40 lines.")
        ] = "brief",
        session: Annotated[
            int | None, Field(description="Report on session N (default: the open one).")
        ] = None,
        offset: Annotated[
            int, Field(ge=0, description="Character offset (next_offset of the last call).")
        ] = 0,
    ) -> CallToolResult:
        """The handoff report: overall state, runs, failures, checks, notes and next actions with their
        commands. `runbook handoff --format FORMAT --out -` as text, 20,000 characters a call
        (offset 0 renders it anew; later offsets page through that rendering). Writes no file."""

        def work(app: App) -> Document:
            key = (format, session)
            with self._lock:
                text = self._handoffs.get(key) if offset else None
            if text is None:
                text = app.handoff(format=format, session_id=session, out="-", tz_name=zone(app)).text
                with self._lock:
                    self._handoffs[key] = text
            part = text[offset : offset + HANDOFF_CHARS]
            end = min(offset, len(text)) + len(part)
            return document(format=format, session=session, offset=offset, next_offset=end,
                            total_chars=len(text), eof=end >= len(text), text=part)  # fmt: skip

        return self.answer(work)

    def wait_for_run(
        self,
        run_id: RunId,
        timeout_seconds: Annotated[
            float, Field(description="Longest wait; at most 50 (larger values wait 50).")
        ] = WAIT_SECONDS,
    ) -> CallToolResult:
        """Wait until the run is no longer queued or running, at most 50 s, and return it (the run
        object of `runbook status --json`) with `finished`: false means call again."""
        bound = min(max(timeout_seconds, 0.0), WAIT_SECONDS)
        began = time.monotonic()
        deadline = began + bound

        def work(app: App) -> Document:
            looking = app
            try:
                while True:
                    found = looking.run_document(run_id)
                    finished = found["run"]["status"] not in ACTIVE_RUN_STATUSES
                    left = deadline - time.monotonic() - LOOK_SECONDS  # kept for the last look
                    if finished or left <= 0:
                        waited = round(time.monotonic() - began, 1)
                        return {**found, "finished": finished, "waited_seconds": waited}
                    time.sleep(min(POLL_SECONDS, left))
                    if looking is not app:
                        looking.close()
                    looking = App(app.workspace)  # each look reads the store afresh
            finally:
                if looking is not app:
                    looking.close()

        return self.answer(work)


READ_TOOLS = ("status", "list_runs", "get_run", "get_logs", "coverage", "plan", "check_history", "handoff",
              "wait_for_run")  # fmt: skip
WRITE_TOOLS = ("start_run", "resume_run", "stop_run", "validate", "add_note", "session_start", "session_end")
DESTRUCTIVE = {"stop_run"}
IDEMPOTENT = {"validate"}


def build_server(config_path: Path, *, allow_write: bool = False) -> MCPServer:
    """The server of the workspace of ``config_path``: the read tools, and the write tools with
    ``allow_write``."""
    from importlib.metadata import version

    tools = Tools(config_path)
    server: MCPServer = MCPServer(
        "runbook", version=version("runbook"), instructions=INSTRUCTIONS, log_level="WARNING"
    )
    for name in READ_TOOLS:
        tool = getattr(tools, name)
        server.add_tool(tool, name=name, description=inspect.cleandoc(tool.__doc__), annotations=READ_ONLY)
    if allow_write:
        for name in WRITE_TOOLS:
            hints = ToolAnnotations(read_only_hint=False, destructive_hint=name in DESTRUCTIVE,
                                    idempotent_hint=name in IDEMPOTENT, open_world_hint=False)  # fmt: skip
            tool = getattr(tools, name)
            server.add_tool(tool, name=name, description=inspect.cleandoc(tool.__doc__), annotations=hints)
    return server


__all__ = ["READ_TOOLS", "WRITE_TOOLS", "Tools", "build_server"]
