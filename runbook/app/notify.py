"""Notifications: the workspace's notifier, and the watcher long-lived processes run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.app.base import Base

if TYPE_CHECKING:
    from runbook.notify import Notifier, NotifyWatcher


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
