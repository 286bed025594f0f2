"""What the MCP tools share: the types of their arguments (read by the SDK at runtime to build
the input schemas), and how a document or an error becomes a tool result.

No ``from __future__ import annotations`` here: the SDK reads the argument types at runtime.
"""

import datetime as dt
import json
from typing import Annotated, Literal

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from runbook.app import App
from runbook.app.documents import Document
from runbook.errors import RunbookError
from runbook.snapshots import JSON_SCHEMA_VERSION

Limit = Annotated[int, Field(ge=1, le=1000, description="Items of each list to return (a page).")]
Offset = Annotated[int, Field(ge=0, description="Items of each list to skip (page start).")]
OptionalDate = Annotated[dt.date | None, Field(description="YYYY-MM-DD")]
Processors = Annotated[list[str] | None, Field(description="Processor names; default: all of them.")]
RunId = Annotated[int, Field(description="A run id (see status or list_runs).")]
# The values of runbook.kinds.RunStatus and NoteKind, spelled out for the input schemas (a test
# keeps them equal).
Statuses = Literal["queued", "running", "succeeded", "failed", "interrupted", "blocked", "cancelled"]


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
