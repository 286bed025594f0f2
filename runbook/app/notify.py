"""Notifications: the workspace's notifier, and the watcher long-lived processes run
(``runbook worker`` in-process; ``runbook serve`` as a background service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.app.base import Base

if TYPE_CHECKING:
    from runbook.notify import Notifier, NotifyWatcher
    from runbook.workspace import Workspace


class Notifications(Base):
    """The notification use cases (mixed into :class:`runbook.app.App`)."""

    def notifier(self) -> Notifier | None:
        """The workspace's notifier, made on first use; None without ``notify:`` targets.

        A target whose ``${VAR}`` is not set is one ConfigError line (exit 2): a run that should
        be watched does not start unwatched.
        """
        if not self.config.notify:
            return None
        if self._notifier is None:
            from runbook.notify import Notifier, resolve_targets

            targets = resolve_targets(self.workspace)  # before the store: a bad target records nothing
            say = self.observer.message if self.observer is not None else None
            self._notifier = Notifier(
                self.store, targets, workspace=self.config.name, redact=self.redactor, say=say
            )
        return self._notifier

    def watch_notifications(self, *, interval: float | None = None) -> NotifyWatcher | None:
        """Start watching for events no controller is alive to send (interrupted and stalled runs)
        and for deliveries other processes left over, on a background thread; None without
        ``notify:`` targets. ``runbook worker`` and ``runbook serve`` run one; stop it with
        :meth:`NotifyWatcher.stop`."""
        notifier = self.notifier()
        if notifier is None:
            return None
        from runbook.notify import WATCH_SECONDS, NotifyWatcher

        return NotifyWatcher(notifier, interval=interval or WATCH_SECONDS).start()


class NotificationService:
    """The notification watcher as a background service of a long-lived process (``runbook
    serve``): :meth:`start` opens an application of its own and starts watching on a thread,
    returning at once; :meth:`stop` ends it (bounded) and closes what it opened."""

    name = "notifications"

    def __init__(self, workspace: Workspace, *, interval: float | None = None) -> None:
        self.workspace = workspace
        self.interval = interval
        self._app: Notifications | None = None
        self._watcher: NotifyWatcher | None = None

    def start(self) -> None:
        from runbook.app import App

        self._app = App(self.workspace)
        self._watcher = self._app.watch_notifications(interval=self.interval)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._app is not None:
            self._app.close()
        self._watcher = self._app = None


def notification_services(workspace: Workspace) -> list[NotificationService]:
    """What a long-lived process runs to send the events no controller is alive to send: the
    watcher, when runbook.yaml has ``notify:`` targets (nothing otherwise)."""
    return [NotificationService(workspace)] if workspace.config.notify else []
