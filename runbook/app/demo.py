"""The demo: the seeds' NBA pipeline on a synthetic DuckDB warehouse, end to end."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.app.inspect import Inspect
from runbook.app.runs import Planned, RunRequest, Runs
from runbook.app.sessions import Sessions
from runbook.errors import ConfigError, UsageError
from runbook.kinds import TaskStatus
from runbook.snapshots.checks import check_snapshot
from runbook.snapshots.model import CheckSnapshot

if TYPE_CHECKING:
    from runbook.engine.controller import Outcome


def prepare_demo_folder(folder: Path, *, fresh: bool) -> Path:
    """Make ``folder`` a demo workspace and return its runbook.yaml.

    A folder holding another project is refused; with ``fresh`` the demo's state (its state
    store, logs, handoffs and warehouse) is deleted first, so everything is built again.
    """
    from runbook.config import load_config
    from runbook.demo import DEMO_NAME, create_demo_workspace

    config = folder / "runbook.yaml"
    if config.exists():
        try:
            is_demo = load_config(config).name == DEMO_NAME
        except ConfigError:
            is_demo = False
        if not is_demo:
            raise UsageError(
                f"{folder} is not a runbook demo workspace (its runbook.yaml is not named {DEMO_NAME}): "
                "not touching it; pass another --dir"
            )
    elif fresh and folder.exists() and any(folder.iterdir()):
        raise UsageError(
            f"--fresh: {folder} is not a runbook demo workspace: not deleting it; pass another --dir"
        )
    if fresh:
        shutil.rmtree(folder / "state", ignore_errors=True)
    return create_demo_workspace(folder)


DEMO_SESSION_TITLE = "Demo: rebuild Phase 3-4 for two seasons"


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: its plan, the run and how it ended, the checks, the handoff."""

    planned: Planned
    run_id: int
    outcome: Outcome
    checks: list[CheckSnapshot]
    checks_from_this_run: bool
    skipped: Counter[str]
    handoff: str | None
    seconds: float


class Demo(Sessions, Runs, Inspect):
    """The demo use case (mixed into :class:`runbook.app.App`)."""

    def demo(self, *, workers: int, command_line: str) -> DemoResult:
        """Plan, record and run the demo's whole range in a session whose end writes the handoff."""
        from runbook.demo import DEMO_END, DEMO_START

        began = time.monotonic()
        request = RunRequest(
            processors=[], start=DEMO_START, end=DEMO_END, workers=workers,
            command_line=command_line, options={"workers": workers, "demo": True},
        )  # fmt: skip
        planned = self.plan(request)
        session = None if self.store.open_session() else self.session_start(DEMO_SESSION_TITLE)
        run = self.submit(request, planned)
        outcome = self.execute(run.id)
        checks = self.run_checks(run.id)
        from_this_run = bool(checks)
        if not checks:
            latest = self.reader()
            checks = (
                [
                    check_snapshot(r, self.check_descriptions(), self.config.warehouse.kind)
                    for r in latest.latest_check_results()
                ]
                if latest
                else []
            )
        skipped = Counter(
            t.skip_reason or "skipped" for t in self.store.tasks(run.id, statuses=[TaskStatus.SKIPPED])
        )
        handoff = self.session_end()[1].path if session is not None else None
        return DemoResult(
            planned, run.id, outcome, checks, from_this_run, skipped, handoff, time.monotonic() - began
        )
