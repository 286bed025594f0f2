"""The next-action engine: from the read model to what to do next, each with its exact command.

:class:`~runbook.reports.actions.model.Facts` is what the engine reads (built by
:func:`runbook.reports.context.build_context` from the snapshots).
:data:`~runbook.reports.actions.situations.SITUATIONS` is a table: each situation (a run is running, a
run was interrupted, dates failed, a gate failed, dates were never built, ...) has a detector that
turns the facts into :class:`~runbook.reports.actions.model.Action` entries.
:func:`~runbook.reports.actions.engine.decide` then orders them: those that complete work first
(``does == "work"``), then those that observe or verify (``"observe"``), then the ones that only
inform (``"note"``). Every command runs literally from the workspace and returns: work is started
with ``--detach``; a running run is watched with ``runbook status --json``, never with ``logs -f``.

The modules, each importing only those listed after it:

- :mod:`~runbook.reports.actions.engine`: :func:`decide` and :func:`next_actions`, the entry points;
- :mod:`~runbook.reports.actions.situations`: the detectors and the :data:`SITUATIONS` table;
- :mod:`~runbook.reports.actions.wording`: dates and ranges in words, and the ranges of commands;
- :mod:`~runbook.reports.actions.model`: the vocabulary (:class:`Action`, :class:`Facts`, ...);
- :mod:`~runbook.reports.actions.overall`: the workspace's status in one word, on its own.
"""
