"""runbook: plan, run, resume, validate and hand off date-partitioned warehouse backfills.

The public API, for scripts and tests that drive runbook in-process::

    from runbook import App, RunRequest, Workspace

    app = App(Workspace.load("runbook.yaml"))
    planned = app.plan(RunRequest(processors=[], start=..., end=...))
    run = app.submit(RunRequest(processors=[]), planned)
    outcome = app.execute(run.id)

Names are imported on first use, so ``import runbook`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "App",
    "ConfigError",
    "RunRequest",
    "RunbookError",
    "StateError",
    "Store",
    "UsageError",
    "Workspace",
]

_WHERE = {
    "App": "runbook.app",
    "RunRequest": "runbook.app",
    "Workspace": "runbook.workspace",
    "Store": "runbook.state.store",
    "RunbookError": "runbook.errors",
    "UsageError": "runbook.errors",
    "ConfigError": "runbook.errors",
    "StateError": "runbook.errors",
}

if TYPE_CHECKING:
    from runbook.app import App, RunRequest
    from runbook.errors import ConfigError, RunbookError, StateError, UsageError
    from runbook.state.store import Store
    from runbook.workspace import Workspace


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'runbook' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
