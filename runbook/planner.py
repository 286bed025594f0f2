"""The planner: from processors, a date range and the state store to a list of tasks.

Each task is one processor over one date (or a chunk of ``batch_days`` runnable dates) with the
tasks it waits for. Every date of the range is accounted for: either it is in a runnable task or
it is in a skipped one with its reason (``off_day``, ``bootstrap``, ``already_done``,
``upstream_skipped``, ``upstream_missing``, ``not_a_gap``, ``not_stale``).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass

from runbook.calendar import Calendar
from runbook.config import RunbookConfig, VersionCommand
from runbook.errors import ConfigError, UsageError
from runbook.state.store import Store

ALREADY_DONE = "already_done"
UPSTREAM_SKIPPED = "upstream_skipped"
UPSTREAM_MISSING = "upstream_missing"
NOT_A_GAP = "not_a_gap"
NOT_STALE = "not_stale"


@dataclass
class PlannedTask:
    processor: str
    date: dt.date
    end_date: dt.date
    skip_reason: str | None = None
    seq: int = 0

    @property
    def runnable(self) -> bool:
        return self.skip_reason is None


@dataclass
class Plan:
    processors: list[str]
    start: dt.date
    end: dt.date
    versions: dict[str, str]
    tasks: list[PlannedTask]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per processor: planned (runnable) tasks and skipped dates by reason."""
        found: dict[str, dict[str, int]] = {name: {"planned": 0} for name in self.processors}
        for task in self.tasks:
            key = task.skip_reason or "planned"
            found[task.processor][key] = found[task.processor].get(key, 0) + 1
        return found


def resolve_versions(config: RunbookConfig, names: list[str], cwd: str) -> dict[str, str]:
    """The code version of each processor: declared, the output of a command, or a definition hash."""
    versions: dict[str, str] = {}
    for name in names:
        declared = config.processors[name].version
        if isinstance(declared, VersionCommand):
            try:
                out = subprocess.run(
                    declared.command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=60
                )
            except subprocess.TimeoutExpired:
                raise ConfigError("version command timed out", path=f"processors.{name}.version") from None
            if out.returncode != 0:
                raise ConfigError(
                    f"version command failed with exit code {out.returncode}: {out.stderr.strip()[:200]}",
                    path=f"processors.{name}.version.command",
                )
            versions[name] = out.stdout.strip()[:128] or "unknown"
        else:
            versions[name] = declared or f"cfg-{config.processors[name].definition_hash()}"
    return versions


def _done_dates(store: Store, processor: str, start: dt.date, end: dt.date) -> dict[dt.date, str | None]:
    """Each date of [start, end] that ``processor`` has built, with the newest code version it used."""
    done: dict[dt.date, str | None] = {}
    for first, last, version in store.succeeded_ranges(processor, start.isoformat(), end.isoformat()):
        day = max(dt.date.fromisoformat(first), start)
        stop = min(dt.date.fromisoformat(last), end)
        while day <= stop:
            done[day] = version
            day += dt.timedelta(days=1)
    return done


def build_plan(
    config: RunbookConfig,
    store: Store,
    calendar: Calendar,
    processors: list[str],
    start: dt.date,
    end: dt.date,
    versions: dict[str, str],
    *,
    resume: bool = True,
    only_gaps: bool = False,
    only_stale: bool = False,
) -> Plan:
    """Plan ``processors`` over [start, end]; unknown names are a UsageError."""
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    unknown = [name for name in processors if name not in config.processors]
    if unknown:
        raise UsageError(f"unknown processor {unknown[0]!r} (known: {', '.join(config.processors)})")
    selected = [name for name in config.order() if name in (processors or config.processors)]

    outside = {
        up: _done_dates(store, up, start, end)
        for name in selected
        for up in config.processors[name].needs
        if up not in selected
    }
    tasks: list[PlannedTask] = []
    # processor -> date -> ("task", index) for a runnable task, or ("skip", reason)
    by_date: dict[str, dict[dt.date, tuple[str, int | str]]] = {}
    built: dict[str, dict[dt.date, str | None]] = {}
    for name in selected:
        proc = config.processors[name]
        bootstrap = config.bootstrap_days(name)
        done = built[name] = _done_dates(store, name, start, end)
        slots: dict[dt.date, tuple[str, int | str]] = {}
        runnable: list[dt.date] = []
        for day, reason in calendar.dates(start, end, bootstrap):
            if reason is None:
                reason = _selection_reason(day, done, versions[name], resume, only_gaps, only_stale)
            if reason is None:
                reason = _upstream_reason(config, calendar, by_date, built, outside, name, day)
            if reason is None:
                runnable.append(day)
            else:
                tasks.append(PlannedTask(name, day, day, reason))
                slots[day] = ("skip", reason)
        for offset in range(0, len(runnable), proc.batch_days):
            chunk = runnable[offset : offset + proc.batch_days]
            index = len(tasks)
            for day in chunk:
                slots[day] = ("task", index)
            tasks.append(PlannedTask(name, chunk[0], chunk[-1]))
        by_date[name] = slots

    rank = {name: position for position, name in enumerate(selected)}
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].date, rank[tasks[i].processor]))
    for seq, index in enumerate(order):
        tasks[index].seq = seq
    return Plan(selected, start, end, {name: versions[name] for name in selected}, tasks)


def _selection_reason(
    day: dt.date,
    done: dict[dt.date, str | None],
    version: str,
    resume: bool,
    only_gaps: bool,
    only_stale: bool,
) -> str | None:
    built = day in done
    if only_gaps or only_stale:
        stale = built and done[day] != version
        if (only_gaps and not built) or (only_stale and stale):
            return None
        return NOT_A_GAP if only_gaps and not only_stale else NOT_STALE
    if resume and built and done[day] == version:
        return ALREADY_DONE
    return None


def _upstream_reason(
    config: RunbookConfig,
    calendar: Calendar,
    by_date: dict[str, dict[dt.date, tuple[str, int | str]]],
    built: dict[str, dict[dt.date, str | None]],
    outside: dict[str, dict[dt.date, str | None]],
    name: str,
    day: dt.date,
) -> str | None:
    for up in config.processors[name].needs:
        if up in by_date:
            kind, value = by_date[up].get(day, ("skip", UPSTREAM_MISSING))
            if kind == "task":
                continue
            # Not selected again (done, not a gap, not stale): fine if built, else missing.
            if value in (ALREADY_DONE, NOT_A_GAP, NOT_STALE):
                if day in built[up]:
                    continue
                return UPSTREAM_MISSING
            return UPSTREAM_SKIPPED if value != UPSTREAM_MISSING else UPSTREAM_MISSING
        elif day in outside[up]:
            continue
        elif calendar.skip_reason(day, config.bootstrap_days(up)) is not None:
            return UPSTREAM_SKIPPED
        else:
            return UPSTREAM_MISSING
    return None
