"""The background watcher that long-lived processes run: ``runbook worker`` and ``runbook serve``.

Every few seconds it takes over deliveries that nobody holds any more (a controller that could not
wait, a process that died) and sends the events no controller is alive to send: runs interrupted
(their controller killed, the machine gone) and runs stalled. Any number of watchers may run on
any machines: each event is claimed in the store before it is sent, so it is sent once.
"""

from __future__ import annotations

import threading

from runbook.notify.notifier import FLUSH_SECONDS, Notifier

WATCH_SECONDS = 2.0


class NotifyWatcher:
    """Runs :meth:`Notifier.scan` every ``interval`` seconds on a daemon thread."""

    def __init__(self, notifier: Notifier, *, interval: float = WATCH_SECONDS) -> None:
        self.notifier = notifier
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> NotifyWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="notify-watch")
            self._thread.start()
        return self

    def stop(self, timeout: float = FLUSH_SECONDS) -> None:
        """Stop watching; wait up to ``timeout`` seconds for deliveries under way."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        self.notifier.close(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.notifier.scan()
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while: keep watching
                self.notifier.say(f"notify: watching failed: {self.notifier.redact(str(exc))}")
            self._stop.wait(self.interval)
