"""What the dashboard's routes share: the pool of apps, cached reads, templates and redactor
(:class:`Dashboard`), parsing of query parameters, and how a RunbookError becomes an answer."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from runbook.errors import ConfigError, RunbookError, UsageError
from runbook.redact import Redactor, redact_tree
from runbook.serve.pages import environment
from runbook.serve.services import Apps, Kept, Reads
from runbook.snapshots import JSON_SCHEMA_VERSION, collector_paused, document, to_data

if TYPE_CHECKING:
    from runbook.app import App
    from runbook.engine.calendar import Calendar
    from runbook.workspace import Workspace

Endpoint = Callable[[Request, "App"], Response]


class Dashboard:
    """What every route shares: the pool of apps, the cached reads, the templates, the redactor."""

    def __init__(self, workspace: Workspace, tz: dt.tzinfo, zone: str) -> None:
        self.workspace = workspace
        self.apps = Apps(workspace)
        self.reads = Reads(workspace)
        self.handoffs = Kept()
        self.env = environment(tz)
        self.tz, self.zone = tz, zone
        self.redactor = Redactor(workspace.secret_values())

    def warm(self) -> None:
        """Compile the templates and import what the pages use, so the first visit is not slow."""
        import markdown_it  # noqa: F401

        import runbook.reports.context  # noqa: F401

        for name in self.env.list_templates():
            self.env.get_template(name)

    def answer(self, endpoint: Endpoint, request: Request, api: bool) -> Response:
        """``endpoint``'s answer, on a worker thread with a borrowed app: a RunbookError becomes a
        4xx/503 answer (JSON for the API, a page otherwise). ``Server-Timing`` says how long the
        work took, in wall and CPU time."""
        began, cpu = time.perf_counter(), time.thread_time()
        try:
            # The cyclic collector waits until the answer is made: what a page builds lives until
            # then, and is freed by reference counting when the endpoint returns.
            with collector_paused(), self.apps.borrow() as app:
                response = endpoint(request, app)
        except RunbookError as error:
            status = error_status(error)
            message = redact_tree(error.message, self.redactor)
            if api:
                response = self.json(status, error=message)
            else:
                response = self.page("error.html.j2", status, status=status, message=message)
        wall, used = (time.perf_counter() - began) * 1000, (time.thread_time() - cpu) * 1000
        timing = f"work;dur={wall:.1f}, cpu;dur={used:.1f}"
        if "server-timing" in response.headers:  # the endpoint's own (a kept page says so)
            timing = f"{response.headers['server-timing']}, {timing}"
        response.headers["server-timing"] = timing
        return response

    def handoff_key(self, app: App, versions: dict[str, str] | None) -> Hashable | None:
        """What a rendered handoff depends on besides the time: the store's fingerprint, the code
        versions and the workspace's templates (None without a store: nothing is kept)."""
        q = app.reader()
        if q is None:
            return None
        folder = self.workspace.templates_dir
        templates = (
            tuple(
                sorted(
                    (str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in folder.rglob("*") if f.is_file()
                )
            )
            if folder.is_dir()
            else ()
        )
        return (q.fingerprint(), tuple(sorted((versions or {}).items())), versions is None, templates)

    def calendar_for(self, app: App) -> Callable[[dt.date, dt.date], Calendar]:
        return lambda start, end: self.reads.calendar(app, start, end)

    def data(self, value: Any) -> Any:
        """``value`` as JSON data with secrets masked."""
        return redact_tree(to_data(value), self.redactor)

    def plain(self, value: Any) -> Any:
        """A heat map or a coverage as JSON data: their strings are dates, states, names and code
        versions, so only their ``warnings`` (if any) can hold something to mask."""
        data = to_data(value)
        if "warnings" in data:
            data["warnings"] = redact_tree(data["warnings"], self.redactor)
        return data

    def json(self, status: int = 200, *, masked: bool = False, **parts: Any) -> Response:
        """A JSON document of ``parts``, with secrets masked unless they already are (``masked``:
        the parts are JSON data from :meth:`data` or :meth:`plain`, not walked again)."""
        if masked:
            body = json.dumps({"schema_version": JSON_SCHEMA_VERSION, **parts}, ensure_ascii=False)
            return Response(body, status_code=status, media_type="application/json")
        data = document(**parts)
        body = json.dumps(redact_tree(data, self.redactor), ensure_ascii=False)
        return Response(body, status_code=status, media_type="application/json")

    def page(self, template: str, code: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            workspace=self.workspace.config.name, zone=self.zone, **values
        )
        return HTMLResponse(html, status_code=code, headers={"cache-control": "no-store"})


def error_status(error: RunbookError) -> int:
    """404 for what does not exist, 400 for a bad request, 503 when the store or warehouse fails."""
    if isinstance(error, UsageError):
        return 404 if " not found" in error.message else 400
    return 400 if isinstance(error, ConfigError) else 503


def parse_date(request: Request, name: str) -> dt.date | None:
    """The query parameter ``name`` as a date, None when absent; one line when it is not one."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{name}: not a date (YYYY-MM-DD): {value!r}") from None


def parse_int(request: Request, name: str, default: int, low: int = 0, high: int = 10_000) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{name}: not a whole number: {value!r}") from None
    if not low <= number <= high:
        raise UsageError(f"{name}: {number} is not within {low}..{high}")
    return number


def guarded(
    dashboard: Dashboard, *, api: bool
) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """A route from ``endpoint(request, app)``, which runs on a worker thread (the event loop only
    passes requests and answers)."""

    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            response: Response = await run_in_threadpool(dashboard.answer, endpoint, request, api)
            return response

        return answer

    return wrap


def get(path: str, endpoint: Callable[[Request], Awaitable[Response]], name: str) -> Route:
    return Route(path, endpoint, methods=["GET"], name=name)


def required_cell(request: Request) -> tuple[str, dt.date]:
    """The ``processor`` and ``date`` of a heat-map cell, both required."""
    processor = request.query_params.get("processor")
    day = parse_date(request, "date")
    if not processor or day is None:
        raise UsageError("a cell needs processor=NAME and date=YYYY-MM-DD")
    return processor, day
