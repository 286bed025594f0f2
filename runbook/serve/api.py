"""The JSON API under ``/api/``: the documents of the CLI's ``--json``, over HTTP (docs/serve.md).

Each answers with the same document as its command (``schema_version`` 2): ``/api/status`` is
``runbook status --json``, ``/api/runs/{id}`` is ``runbook show ID --json`` and so on. Errors are
``{"schema_version": 2, "error": "one line"}`` with 400, 404 or 503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runbook.clock import utcnow
from runbook.errors import UsageError
from runbook.kinds import RunStatus
from runbook.serve.dashboard import Dashboard, get, guarded, parse_date, parse_int, required_cell

if TYPE_CHECKING:
    from runbook.app import App


def routes(dashboard: Dashboard) -> list[Route]:
    d = dashboard
    wrap = guarded(d, api=True)

    @wrap
    def status(request: Request, app: App) -> Response:
        recent = parse_int(request, "recent", 5, 0, 1000)
        return d.json(generated_at=utcnow(), runs=app.status(recent=recent), pools=app.pools())

    @wrap
    def history(request: Request, app: App) -> Response:
        processor = request.query_params.get("processor") or None
        wanted = request.query_params.get("status") or None
        if wanted is not None and wanted not in {s.value for s in RunStatus}:
            raise UsageError(
                f"status: unknown run status {wanted!r} (use {', '.join(s.value for s in RunStatus)})"
            )
        limit = parse_int(request, "limit", 50, 1, 10_000)
        runs = app.history(processor=processor, status=wanted, limit=limit)
        filters = {"processor": processor, "status": wanted, "since": None, "dates": None}
        return d.json(filters=filters, runs=runs)

    @wrap
    def run(request: Request, app: App) -> Response:
        with_tasks = request.query_params.get("tasks") in ("1", "true", "yes")
        detail = app.run_detail(int(request.path_params["run_id"]), with_tasks=with_tasks)
        return d.json(masked=True, **d.data(detail))

    @wrap
    def coverage(request: Request, app: App) -> Response:
        start, end = parse_date(request, "start"), parse_date(request, "end")
        found = app.coverage(
            request.path_params["processor"],
            start,
            end,
            calendar_for=d.calendar_for(app),
            versions=d.reads.versions(),
        )
        return d.json(masked=True, **d.plain(found))

    @wrap
    def heatmap(request: Request, app: App) -> Response:
        start, end = parse_date(request, "start"), parse_date(request, "end")
        found = app.heatmap(start, end, calendar_for=d.calendar_for(app), versions=d.reads.versions())
        return d.json(masked=True, **d.plain(found))

    @wrap
    def cell(request: Request, app: App) -> Response:
        processor, day = required_cell(request)
        found = app.heatmap_cell(
            processor, day, calendar_for=d.calendar_for(app), versions=d.reads.versions()
        )
        return d.json(masked=True, **d.data(found))

    @wrap
    def checks_history(request: Request, app: App) -> Response:
        check = request.query_params.get("check") or None
        processor = request.query_params.get("processor") or None
        limit = parse_int(request, "limit", 20, 1, 10_000)
        found = app.check_history(check, processor, limit)
        return d.json(filters={"check": check, "processor": processor, "limit": limit}, checks=found)

    @wrap
    def handoff(request: Request, app: App) -> Response:
        context, _ = app.handoff_context(
            tz_name=d.zone, calendar_for=d.calendar_for(app), versions=d.reads.versions()
        )
        parts = {key: value for key, value in context.items() if key != "schema_version"}
        return d.json(masked=True, **parts)  # the handoff masks its own

    return [
        get("/api/status", status, "api_status"),
        get("/api/history", history, "api_history"),
        get("/api/runs/{run_id:int}", run, "api_run"),
        get("/api/coverage/{processor}", coverage, "api_coverage"),
        get("/api/heatmap", heatmap, "api_heatmap"),
        get("/api/heatmap/cell", cell, "api_heatmap_cell"),
        get("/api/checks/history", checks_history, "api_checks_history"),
        get("/api/handoff", handoff, "api_handoff"),
    ]
