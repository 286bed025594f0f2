"""Resuming and stopping runs, including adopted ones whose process or watcher is gone.

Whether a run's controller is alive is judged from its PID on this host and from its heartbeat
elsewhere (for an adopted run: the PID of the process it follows), so ``resume`` never starts a
run twice: it takes each run with one compare-and-set on its epoch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from runbook.app.runs import Runs
from runbook.clock import utcnow
from runbook.engine.liveness import adopted_pid, controller_alive, this_host, worker_alive
from runbook.engine.versions import resolve_versions
from runbook.errors import QuotaWait, RunBusy, UsageError
from runbook.kinds import ACTIVE_RUN_STATUSES, WATCHER, RunStatus, SkipReason, TaskStatus
from runbook.state.records import Run


@dataclass
class Resumable:
    """What ``runbook resume`` found: runs to resume, runs whose controller is still alive, and
    adopted runs whose process runs but whose watcher is gone (``rewatch``)."""

    todo: list[Run]
    alive: list[Run]
    rewatch: list[Run] = field(default_factory=list)


@dataclass
class Resumed:
    """What ``runbook resume`` did: runs continued in the background (with their PIDs), the one
    to continue in this process (``here``, taken at ``epoch``), and the runs left alone because
    their controller is alive."""

    detached: list[tuple[Run, int]]
    here: Run | None
    alive: list[Run]
    epoch: int | None = None
    watchers: list[tuple[Run, int]] = field(default_factory=list)  # adopted runs followed again: PIDs
    waiting: list[str] = field(default_factory=list)  # runs left until their daily quota resets: why


@dataclass
class ResumePreview:
    """What ``runbook resume --dry-run`` shows: per run to resume, the tasks it would run (its
    pending and running tasks, and the failed, blocked and cancelled ones it reopens); the runs
    left alone because their controller is alive; the adopted runs whose watcher it would restart."""

    runs: list[tuple[Run, list[tuple[str, str, str, str]]]]  # (run, [(processor, date, end_date, status)])
    alive: list[Run]
    rewatch: list[Run]


class Resume(Runs):
    """The resume and stop use cases (mixed into :class:`runbook.app.App`)."""

    def resumable(self, run_id: int | None) -> Resumable:
        """What ``runbook resume`` would do.

        Without a run id: every interrupted run and every active run whose controller is gone.
        With one: that run, also when it failed or was blocked (its failed tasks are retried).
        """
        if run_id is not None:
            run = self.get_run(run_id)
            if controller_alive(run):
                return Resumable([], [], [run]) if self.watcher_gone(run) else Resumable([], [run])
            done = run.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED)
            return Resumable([] if done else [run], [])
        q = self.reader()
        if q is None:
            return Resumable([], [])
        candidates = q.list_runs(statuses=(*ACTIVE_RUN_STATUSES, RunStatus.INTERRUPTED), limit=None)
        alive = [run for run in candidates if controller_alive(run)]
        rewatch = [run for run in alive if self.watcher_gone(run)]
        todo = [run for run in reversed(candidates) if run not in alive]
        return Resumable(todo, [run for run in alive if run not in rewatch], rewatch)

    def watcher_gone(self, run: Run) -> bool:
        """Whether ``run`` follows an adopted process that runs while no watcher records it."""
        if adopted_pid(run) is None:
            return False
        q = self.reader()
        helpers = q.run_workers([run.id])[run.id] if q is not None else []
        return not any(w.kind == WATCHER and worker_alive(w) for w, _, _ in helpers)

    def resume(self, run_id: int | None, *, detach: bool, force: bool = False) -> Resumed:
        """Take every run to resume (one compare-and-set each), then continue one here or each in
        the background. A run with a live controller is left to it: named ``run_id``, it is
        :class:`~runbook.errors.RunBusy` (exit 5). A run a daily quota interrupted is not taken
        before the quota resets unless ``force``: :class:`~runbook.errors.QuotaWait` (exit 4)."""
        found = self.resumable(run_id)
        moment = utcnow()
        waiting = [run for run in found.todo if run.resume_after is not None and run.resume_after > moment]
        if waiting and not force:
            if run_id is not None or len(waiting) == len(found.todo):
                raise QuotaWait(quota_wait_line(waiting[0], moment))
            found.todo = [run for run in found.todo if run not in waiting]  # the others go on
        if found.todo or found.rewatch:
            self.notifier()  # a webhook whose ${VAR} is unset: one line now, not a silent child
        if run_id is not None and found.alive:
            run = found.alive[0]
            if adopted_pid(run) is not None:
                raise RunBusy(
                    f"run {run.id} follows PID {run.pid} on {run.host}, which runs, and its watcher records it: "
                    "nothing to resume"
                )
            raise RunBusy(
                f"run {run.id} is running: its controller is PID {run.pid} on {run.host} (alive); "
                f"not started twice (`runbook worker --run {run.id}` helps it)"
            )
        watchers = [(run, self.spawn_watcher(run.id, epoch=run.epoch)) for run in found.rewatch]
        taken: list[tuple[Run, int]] = []
        for run in found.todo:
            epoch = self.take_over(run)
            if epoch is not None:
                taken.append((run, epoch))
            elif run_id is not None:
                now = self.store.get_run(run.id) or run
                raise RunBusy(
                    f"run {run.id} was just taken by PID {now.pid} on {now.host} (another `runbook resume`): "
                    "not started twice"
                )
        later = [quota_wait_line(run, moment) for run in waiting] if not force else []
        if not detach and len(taken) == 1:
            return Resumed([], taken[0][0], found.alive, taken[0][1], watchers, later)
        detached = [(run, self.spawn(run.id, epoch=epoch)) for run, epoch in taken]
        return Resumed(detached, None, found.alive, None, watchers, later)

    def resume_preview(self, run_id: int | None) -> ResumePreview:
        """What :meth:`resume` would do, recording nothing (``runbook resume --dry-run``)."""
        found = self.resumable(run_id)
        if run_id is not None and found.alive:
            run = found.alive[0]
            raise RunBusy(
                f"run {run.id} is running: its controller is PID {run.pid} on {run.host} (alive); "
                f"`runbook resume {run.id}` would not start it twice (`runbook worker --run {run.id}` helps it)"
            )
        q = self.reader()
        rows = q.open_task_dates([run.id for run in found.todo]) if q is not None else []
        built: dict[int, dict[tuple[str, str], tuple[int, int]]] = {}
        for run in found.todo:
            if q is not None and run.status in (RunStatus.FAILED, RunStatus.BLOCKED):
                versions = resolve_versions(self.config, list(run.processors), str(self.workspace.root))
                built[run.id] = q.built_since(run.id, versions)
        per_run: dict[int, list[tuple[str, str, str, str]]] = {run.id: [] for run in found.todo}
        for run_key, processor, date, end_date, status in rows:
            # A date another run built since is skipped, not reopened (see RunOwnership.take_run).
            shown = SkipReason.ALREADY_DONE if (processor, date) in built.get(run_key, {}) else status
            per_run[run_key].append((processor, date, end_date, shown))
        return ResumePreview([(run, per_run[run.id]) for run in found.todo], found.alive, found.rewatch)

    def take_over(self, run: Run) -> int | None:
        """Win the run for this process (compare-and-set on its epoch): end its previous owner's
        steps on this host, reopen failed and blocked tasks, re-read the code versions. None when
        another process won it."""
        from runbook.steps.command import kill_process_group

        store = self.store
        for task in store.tasks(run.id, statuses=[TaskStatus.RUNNING]):
            # Steps run in their own process group and may outlive a killed controller.
            if task.pid and run.host == this_host() and task.claimed_by == run.controller_id:
                kill_process_group(task.pid)
        versions = resolve_versions(self.config, list(run.processors), str(self.workspace.root))
        owner = f"{this_host()[:40]}:{os.getpid()}:resume"
        adopted = adopted_pid(run) is not None  # its steps now log to the run's own log
        epoch = store.take_run(
            run.id, seen_epoch=run.epoch, owner=owner, pid=os.getpid(), host=this_host(),
            log_path=self.log_path(run.id) if adopted else run.log_path or self.log_path(run.id), now=utcnow(),
            reopen=True, versions=versions,
        )  # fmt: skip
        if epoch is None:
            return None
        if adopted:
            self.settle_adopted(run, owner, epoch)
        store.add_event(
            "run_resumed", f"taken over (epoch {epoch}); failed and blocked tasks reopened", run_id=run.id
        )
        return epoch

    def settle_adopted(self, run: Run, owner: str, epoch: int) -> None:
        """An adopted run whose process and watcher are gone: record the dates its log reached as
        built; the dates it never reached stay for this run's controller to build."""
        from runbook.engine.adopt import reached_of

        now = utcnow()
        reached = reached_of(run)
        since = run.heartbeat_at or now
        self.store.record_reached(run.id, owner, epoch, reached, since=since, now=now, settle="pending")
        self.store.add_event(
            "adopted_settled",
            f"PID {run.pid} is gone with its log at {reached or 'no date of the range'}: the dates up to it are "
            f"built; the rest are built by {', '.join(run.processors)}'s own step",
            run_id=run.id,
        )

    def cancel_jobs(self, run_id: int, tasks: list[Any]) -> None:
        """Cancel the BigQuery jobs that the gone holders of ``tasks`` left running, and record it."""
        if not tasks or self.config.warehouse.kind != "bigquery":
            return
        from runbook.errors import WarehouseError
        from runbook.warehouse.bigquery import BigQueryWarehouse

        warehouse = self.warehouse()
        if not isinstance(warehouse, BigQueryWarehouse):
            return
        for task in tasks:
            try:
                cancelled = warehouse.cancel_step(task.job_id)
            except WarehouseError as exc:
                self.store.add_event("job_cancel_failed", f"job {task.job_id}: {exc}", run_id=run_id,
                                     processor=task.processor, date=task.date)  # fmt: skip
                continue
            for job_id in cancelled:
                self.store.add_event("job_cancelled", f"job {job_id} cancelled (stop)", run_id=run_id,
                                     processor=task.processor, date=task.date)  # fmt: skip

    def stop(self, run_id: int) -> Run:
        """Ask a run to stop: in-flight steps end, the run is interrupted and stays resumable.

        The request is recorded in the store (its processes see it at their next heartbeat, on
        any machine); on this host the controller also gets SIGTERM at once.
        """
        run = self.get_run(run_id)
        if run.status not in ACTIVE_RUN_STATUSES:
            raise UsageError(f"run {run_id} is {run.status}, not running")
        store = self.store
        if not controller_alive(run):
            returned = store.mark_interrupted(run_id, "controller gone")
            self.cancel_jobs(run_id, [task for task in returned if task.job_id])
            return run
        store.request_stop(run_id, utcnow())
        if run.host == this_host() and run.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(run.pid, signal.SIGTERM)
        store.add_event("stop_requested", f"stop requested for PID {run.pid} on {run.host}", run_id=run_id)
        return run


def quota_wait_line(run: Run, now: dt.datetime) -> str:
    """One line: when the daily quota that interrupted ``run`` resets, and how to go on."""
    assert run.resume_after is not None
    left = max(int((run.resume_after - now).total_seconds()), 0)
    hours, minutes = divmod((left + 59) // 60, 60)
    when = run.resume_after.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"run {run.id} was interrupted by a used-up daily quota that resets at {when} (in {hours}h {minutes:02d}m): "
        f"resume it then, or now with `runbook resume {run.id} --force`"
    )


__all__ = ["ResumePreview", "Resumable", "Resume", "Resumed", "quota_wait_line"]
