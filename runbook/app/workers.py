"""``runbook worker``: claim and run the tasks of active runs from this process."""

from __future__ import annotations

from runbook.app.runs import Runs
from runbook.engine.versions import resolve_versions
from runbook.engine.worker import WorkerReport
from runbook.runlog import RunLog


class Workers(Runs):
    """The worker use case (mixed into :class:`runbook.app.App`)."""

    def work(
        self,
        *,
        run_id: int | None,
        threads: int | None = None,
        max_tasks: int | None = None,
        idle_exit: float | None = None,
        say: object = None,
    ) -> WorkerReport:
        """Help run ``run_id`` (or every active run) until a signal, ``max_tasks`` tasks, or
        ``idle_exit`` seconds with nothing to claim."""
        from runbook.engine.worker import Worker

        if run_id is not None:
            self.get_run(run_id)
        logs: dict[int, RunLog] = {}

        def log_of(run: int) -> RunLog:
            if run not in logs:
                logs[run] = RunLog(self.workspace.resolve(self.log_path(run)), self.redactor)
            return logs[run]

        parts = self.controller()  # the same gatekeeper and readiness as a controller
        worker = Worker(
            self.store, self.config, self.executor_factory(),
            versions=resolve_versions(self.config, list(self.config.processors), str(self.workspace.root)),
            logs=log_of, threads=threads or self.config.workers, gatekeeper=parts.gatekeeper,
            readiness=parts.readiness, redact=self.redactor, say=say if callable(say) else (lambda line: None),
            lease_seconds=self.workspace.lease_seconds, store_retry_seconds=self.workspace.store_retry_seconds,
        )  # fmt: skip
        watcher = self.watch_notifications()  # interrupted and stalled runs, once each
        worker.install_signal_handlers()
        try:
            return worker.work(run_id=run_id, max_tasks=max_tasks, idle_exit=idle_exit)
        finally:
            worker.restore_signal_handlers()
            if watcher is not None:
                watcher.stop()
            for log in logs.values():
                log.close()
