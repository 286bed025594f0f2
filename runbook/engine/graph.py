"""Which processor's tasks wait for which: the links of one run, derived from the config.

The links are recorded in the store when the run is created (``task_dep``, ``gate_dep``), so that
any process can tell which tasks are ready without the plan in memory. The store turns each link
into task-to-task rows with one statement (see ``TaskGraph.add_graph``):

- a date of a processor waits for every task of each upstream (``needs``) that covers it,
  chunks of ``batch_days`` included;
- with ``depends_on_past`` a task also waits for the previous task of its own processor;
- a processor with checks has a gate: its checks run once its tasks are done, and when one of
  them is blocking, the tasks of its direct downstream wait for them to pass;
- its ``per_date`` checks have one gate per window of ``check_batch_days`` dates: they run once the
  window's tasks are done, and a downstream task waits only for the window of its dates (and is
  blocked only when a blocking check failed on one of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runbook.config import RunbookConfig
from runbook.state.graph import GateSpec, Links, Need


def links(config: RunbookConfig, processors: Sequence[str], spans: Mapping[str, int]) -> Links:
    """The links among ``processors`` (the processors of one run); ``spans`` are the most
    calendar days one task of a processor covers, where it is more than one (chunks)."""
    present = [name for name in config.order() if name in processors]
    needs = [
        Need(name, up, spans.get(up, 1))
        for name in present
        for up in config.processors[name].needs
        if up in present
    ]
    past = [name for name in present if config.processors[name].depends_on_past]
    gates = []
    for name in present:
        proc = config.processors[name]
        for per_date in (False, True):
            checks = [check for check in proc.checks if check.is_per_date == per_date]
            if not checks:
                continue
            blocking = any(check.severity == "block" for check in checks)
            downstream = [other for other in present if blocking and name in config.processors[other].needs]
            gates.append(GateSpec(name, blocking, downstream, proc.check_batch_days if per_date else 0))
    return Links(needs, past, gates)
