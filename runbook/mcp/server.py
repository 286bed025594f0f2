"""The tools of ``runbook mcp``, on the SDK's :class:`~mcp.server.MCPServer` (docs/mcp.md).

Each call loads runbook.yaml and opens the state store afresh, as a CLI command would, asks the
application layer for the document the CLI's ``--json`` prints, pages its long lists and returns
it as structured content (and as JSON text). A :class:`~runbook.errors.RunbookError` becomes a
tool error whose text is the CLI's line (``runbook: error: ...``). Tools run on the SDK's worker
threads, each with an :class:`~runbook.app.App` of its own.

No ``from __future__ import annotations`` here: the SDK reads the tools' signatures at runtime to
build their input schemas.
"""

import contextlib
import datetime as dt
import inspect
import json
import os
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from runbook.app import App, RunRequest
from runbook.app.documents import (
    LOG_CHARS,
    Document,
    note_document,
    plan_document,
    resumed_document,
    session_document,
    started_document,
    stopped_document,
    validation_document,
)
from runbook.errors import RunbookError
from runbook.kinds import ACTIVE_RUN_STATUSES
from runbook.snapshots import JSON_SCHEMA_VERSION, document
from runbook.workspace import Workspace

WAIT_SECONDS = 50.0  # wait_for_run answers within this, finished or not
POLL_SECONDS = 1.0
LOOK_SECONDS = 0.5  # the time a look at the store may take, kept free before the deadline
HANDOFF_CHARS = 20_000
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

Limit = Annotated[int, Field(ge=1, le=1000, description="Items of each list to return (a page).")]
Offset = Annotated[int, Field(ge=0, description="Items of each list to skip (page start).")]
OptionalDate = Annotated[dt.date | None, Field(description="YYYY-MM-DD")]
Processors = Annotated[list[str] | None, Field(description="Processor names; default: all of them.")]
RunId = Annotated[int, Field(description="A run id (see status or list_runs).")]
# The values of runbook.kinds.RunStatus and NoteKind, spelled out for the input schemas (a test
# keeps them equal).
Statuses = Literal["queued", "running", "succeeded", "failed", "interrupted", "blocked", "cancelled"]

INSTRUCTIONS = """\
runbook controls long, date-by-date warehouse backfills of one workspace (its runbook.yaml).
Start with `handoff` (format brief): the overall state, what failed and why, and the next actions
with their exact commands. `status` lists live and recent runs; `get_run` shows one with failures
grouped by error; `get_logs` pages through a run's log; `wait_for_run` waits up to 50 s for a run
to end. Every result is the document of the CLI's --json (docs/json.md), with long lists paged:
`pages` gives each paged list's total and the next offset. Errors are the CLI's one line."""


class Tools:
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

    # -- writing (--allow-write) ----------------------------------------------------------------

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


# -- results ------------------------------------------------------------------------------------


def success(data: Document) -> CallToolResult:
    text = json.dumps(data, ensure_ascii=False, default=str)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=json.loads(text))


def failure(error: RunbookError) -> CallToolResult:
    """The CLI's line for ``error`` (what `runbook` prints on stderr), and its exit code."""
    line = f"runbook: error: {error.message}"
    data = {"schema_version": JSON_SCHEMA_VERSION, "error": error.message, "exit_code": error.exit_code}
    return CallToolResult(
        content=[TextContent(type="text", text=line)], structured_content=data, is_error=True
    )


def zone(app: App) -> str | None:
    """The time zone of reports: ``RUNBOOK_TZ``, as the CLI's ``--tz`` takes it from there."""
    return app.workspace.environ.get("RUNBOOK_TZ") or None


def page_of(offset: int, limit: int, returned: int, total: int) -> dict[str, int | None]:
    following = offset + returned
    return {"offset": offset, "limit": limit, "returned": returned, "total": total,
            "next_offset": following if following < total else None}  # fmt: skip


def paged(data: Document, lists: list[str], offset: int, limit: int) -> Document:
    """``data`` with each of ``lists`` cut to ``[offset, offset + limit)``, and ``pages``: for each,
    its ``total`` and the ``next_offset`` to ask for (null on the last page). A list that is null
    in the document (``tasks`` not asked for) stays null."""
    pages = {}
    for key in lists:
        items = data.get(key)
        if not isinstance(items, list):
            continue
        shown = items[offset : offset + limit]
        data[key] = shown
        pages[key] = page_of(offset, limit, len(shown), len(items))
    data["pages"] = pages
    return data


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


__all__ = ["READ_TOOLS", "WRITE_TOOLS", "Tools", "build_server"]
