"""Webhook notifications of runs (``notify:`` in runbook.yaml): finished, failed, blocked,
interrupted, stalled and throttled.

- :mod:`~runbook.notify.payload`: the JSON document a webhook receives (docs/json-notify.md) and
  its Slack rendering, with the run's summary and next action;
- :mod:`~runbook.notify.notifier`: :class:`Notifier` claims each event in the state store's outbox
  and delivers it in the background, with retries;
- :mod:`~runbook.notify.events`: the events no controller is alive to send (interrupted, stalled);
- :mod:`~runbook.notify.watch`: :class:`NotifyWatcher`, the loop long-lived processes run.
"""

from __future__ import annotations

from runbook.notify.notifier import FLUSH_SECONDS, Notifier, Target, resolve_targets
from runbook.notify.watch import WATCH_SECONDS, NotifyWatcher

__all__ = ["FLUSH_SECONDS", "WATCH_SECONDS", "Notifier", "NotifyWatcher", "Target", "resolve_targets"]
