"""The dashboard as an ASGI application: its routes, start-up and shutdown, behind the token rules.

:func:`create_app` builds it for a workspace. Every route is a ``GET``: the dashboard only reads.
A route's work (the queries and the rendering) runs on a worker thread with an
:class:`~runbook.app.App` borrowed from the pool; everything it shows passes through the
workspace's redactor first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from runbook.serve import api, views
from runbook.serve.dashboard import Dashboard
from runbook.serve.security import Guard
from runbook.serve.services import BackgroundService

if TYPE_CHECKING:
    from runbook.workspace import Workspace


def create_app(
    workspace: Workspace,
    *,
    token: str | None = None,
    services: Sequence[BackgroundService] = (),
    tz: dt.tzinfo = dt.UTC,
    zone: str = "UTC",
) -> Guard:
    """The dashboard of ``workspace`` behind its token rules; ``services`` run from start-up to
    shutdown (see :mod:`runbook.serve.services`)."""
    dashboard = Dashboard(workspace, tz, zone)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started: list[BackgroundService] = []
        await run_in_threadpool(dashboard.warm)
        try:
            for service in services:
                await run_in_threadpool(service.start)
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                await run_in_threadpool(service.stop)
            dashboard.apps.close()

    routes = [
        *api.routes(dashboard),
        *views.routes(dashboard),
        Mount("/static", StaticFiles(packages=[("runbook", "serve/static")]), name="static"),
    ]
    application = Starlette(routes=routes, lifespan=lifespan)
    return Guard(application, token=token)
