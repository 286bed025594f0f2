"""The planner: from processors, a date range and the state store to a list of tasks.

Each task is one processor over one date (or a chunk of ``batch_days`` runnable dates) with the
tasks it waits for. Every date of the range is accounted for: either it is in a runnable task or
it is in a skipped one with its reason (``off_day``, ``bootstrap``, ``already_done``,
``upstream_skipped``, ``upstream_missing``, ``not_a_gap``, ``not_stale``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, Protocol

from runbook.config import RunbookConfig
from runbook.engine.calendar import Calendar
from runbook.errors import UsageError
from runbook.kinds import SkipReason

ALREADY_DONE = SkipReason.ALREADY_DONE
UPSTREAM_SKIPPED = SkipReason.UPSTREAM_SKIPPED
UPSTREAM_MISSING = SkipReason.UPSTREAM_MISSING
NOT_A_GAP = SkipReason.NOT_A_GAP
NOT_STALE = SkipReason.NOT_STALE


class BuiltDates(Protocol):
    """What the planner reads from the state store: which dates are built, with which version."""

    def succeeded_ranges(self, processor: str, start: str, end: str) -> list[tuple[str, str, str | None]]: ...


def resolve_range(
    config: RunbookConfig, processors: Sequence[str], start: dt.date | None, end: dt.date | None
) -> tuple[dt.date, dt.date]:
    """The date range of a request, after checking it and the processor names against the config.

    Needs no state store, so commands call it before opening one: bad input never creates or
    touches the state DB.
    """
    start = start or config.calendar.start
    end = end or config.calendar.end
    if start is None or end is None:
        raise UsageError("no date range: pass --start and --end (or set calendar.start/end in runbook.yaml)")
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    unknown = [name for name in processors if name not in config.processors]
    if unknown:
        raise UsageError(f"unknown processor {unknown[0]!r} (known: {', '.join(config.processors)})")
    return start, end


class PlannedTask(NamedTuple):
    processor: str
    date: dt.date
    end_date: dt.date
    skip_reason: str | None = None
    seq: int = 0  # the order to run in: by date, then by dependency order; gaps allowed

    @property
    def runnable(self) -> bool:
        return self.skip_reason is None


class Plan:
    """A plan's range, processors and code versions, and its tasks: streamed by :meth:`stream`
    (what recording a run does, holding a few processors' dates at a time), or listed by
    :attr:`tasks` (what showing a plan does)."""

    def __init__(
        self,
        processors: list[str],
        start: dt.date,
        end: dt.date,
        versions: dict[str, str],
        stream: Callable[[], Iterator[PlannedTask]],
    ) -> None:
        self.processors = processors
        self.start = start
        self.end = end
        self.versions = versions
        self._stream = stream
        self._tasks: list[PlannedTask] | None = None

    def stream(self) -> Iterator[PlannedTask]:
        """The tasks, processor by processor in dependency order."""
        return iter(self._tasks) if self._tasks is not None else self._stream()

    @property
    def tasks(self) -> list[PlannedTask]:
        if self._tasks is None:
            self._tasks = list(self._stream())
        return self._tasks

    def counts(self) -> dict[str, dict[str, int]]:
        """Per processor: planned (runnable) tasks and skipped dates by reason."""
        found: dict[str, dict[str, int]] = {name: {"planned": 0} for name in self.processors}
        for task in self.stream():
            key = task.skip_reason or "planned"
            found[task.processor][key] = found[task.processor].get(key, 0) + 1
        return found


def _done_dates(store: BuiltDates, processor: str, start: dt.date, end: dt.date) -> dict[dt.date, str | None]:
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
    store: BuiltDates,
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
    """Plan ``processors`` over [start, end] (checked by :func:`resolve_range`)."""
    resolve_range(config, processors, start, end)
    selected = [name for name in config.order() if name in (processors or config.processors)]

    def stream() -> Iterator[PlannedTask]:
        return _plan_tasks(
            config, store, calendar, selected, start, end, versions, resume=resume, only_gaps=only_gaps,
            only_stale=only_stale,
        )  # fmt: skip

    return Plan(selected, start, end, {name: versions[name] for name in selected}, stream)


def _plan_tasks(
    config: RunbookConfig,
    store: BuiltDates,
    calendar: Calendar,
    selected: list[str],
    start: dt.date,
    end: dt.date,
    versions: dict[str, str],
    *,
    resume: bool,
    only_gaps: bool,
    only_stale: bool,
) -> Iterator[PlannedTask]:
    """Each processor's tasks in turn. A processor's dates (why each is skipped, which are built)
    are kept only until the last processor that needs them is planned."""
    rank = {name: position for position, name in enumerate(selected)}
    width = len(selected)
    last_user = {
        up: max(rank[name] for name in selected if up in config.processors[name].needs)
        for up in selected
        if any(up in config.processors[name].needs for name in selected)
    }
    outside = {
        up: _done_dates(store, up, start, end)
        for name in selected
        for up in config.processors[name].needs
        if up not in selected
    }
    # processor -> date -> None when a task builds it, else why it is skipped
    by_date: dict[str, dict[dt.date, str | None]] = {}
    built: dict[str, dict[dt.date, str | None]] = {}
    for name in selected:
        proc = config.processors[name]
        bootstrap = config.bootstrap_days(name)
        done = _done_dates(store, name, start, end)
        slots: dict[dt.date, str | None] = {}
        runnable: list[dt.date] = []
        position = rank[name]
        for day, reason in calendar.dates(start, end, bootstrap):
            if reason is None:
                reason = _selection_reason(day, done, versions[name], resume, only_gaps, only_stale)
            if reason is None:
                reason = _upstream_reason(config, calendar, by_date, built, outside, name, day)
            if reason is None:
                runnable.append(day)
            else:
                yield PlannedTask(name, day, day, reason, (day - start).days * width + position)
            slots[day] = reason
        for offset in range(0, len(runnable), proc.batch_days):
            chunk = runnable[offset : offset + proc.batch_days]
            yield PlannedTask(name, chunk[0], chunk[-1], None, (chunk[0] - start).days * width + position)
        if name in last_user:
            by_date[name] = slots
            built[name] = done
        for up in [up for up, last in last_user.items() if last == position]:
            by_date.pop(up, None)  # nothing planned after this needs them
            built.pop(up, None)


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
    by_date: dict[str, dict[dt.date, str | None]],
    built: dict[str, dict[dt.date, str | None]],
    outside: dict[str, dict[dt.date, str | None]],
    name: str,
    day: dt.date,
) -> str | None:
    for up in config.processors[name].needs:
        if up in by_date:
            value = by_date[up].get(day, UPSTREAM_MISSING)
            if value is None:  # a task builds it
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
