"""The situations the next-action engine knows, as a table: :data:`SITUATIONS`.

Each situation (a run is running, a run was interrupted, dates failed, a gate failed, dates were
never built, ...) has a detector that turns the :class:`~runbook.reports.actions.model.Facts`
into :class:`~runbook.reports.actions.model.Action` entries, each with its exact command; the
helpers above them read the facts (which runs hold or feed which dates, which failures persist).
A situation added by another part of runbook slots in as one more row of :data:`SITUATIONS` (see
the ``HOOK`` row for a quota pause; per-date check failures came in that way).
"""

from __future__ import annotations

from collections.abc import Sequence

from runbook.formatting import plural
from runbook.formatting import span as date_span
from runbook.kinds import Severity
from runbook.reports.actions.model import NOTE, OBSERVE, WORK, Action, Facts, Situation
from runbook.reports.actions.wording import (
    _consecutive,
    _last,
    _per_processor,
    _progress,
    _ranges_text,
    _span_days,
    segments,
)
from runbook.snapshots.model import FailureGroup, NoteSnapshot, RunSnapshot

MAX_RANGE_ACTIONS = 6  # gap (or stale) commands listed one by one; the rest share one command


# -- helpers ----------------------------------------------------------------------------------


def _newer_fix(facts: Facts, since: str | None) -> NoteSnapshot | None:
    """The newest ``fix`` note made after ``since`` (an ISO time), if any."""
    fixes = [n for n in facts.notes.get("fix", []) if n.at and (since is None or n.at > since)]
    return fixes[-1] if fixes else None


def _claimed(facts: Facts) -> dict[str, set[str]]:
    """Per processor, the dates some live, interrupted or resumable run will build."""
    found: dict[str, set[str]] = {}
    for run in _windows(facts):
        for name, days in facts.open_dates.get(run.id, {}).items():
            found.setdefault(name, set()).update(days)
    return found


def _windows(facts: Facts) -> list[RunSnapshot]:
    """Runs that hold (or will hold, once resumed) processors over their date ranges."""
    return [*facts.running, *facts.interrupted, *facts.resumable, *(r for r, _ in facts.paused)]


def _upstreams(facts: Facts, name: str) -> set[str]:
    needs = {p.name: p.needs for p in facts.processors}
    found: set[str] = set()
    todo = list(needs.get(name, []))
    while todo:
        up = todo.pop()
        if up not in found:
            found.add(up)
            todo.extend(needs.get(up, []))
    return found


def _feeding_runs(facts: Facts, names: Sequence[str], start: str, end: str) -> set[tuple[int, str]]:
    """(run, upstream) pairs: a run that will build an upstream of ``names`` within [start, end]."""
    ups = set().union(*(_upstreams(facts, name) for name in names)) - set(names)
    found = set()
    for run in _windows(facts):
        for up, days in facts.open_dates.get(run.id, {}).items():
            if up in ups and any(start <= day <= end for day in days):
                found.add((run.id, up))
    return found


def _overlapping_runs(facts: Facts, names: Sequence[str], start: str, end: str) -> list[int]:
    return sorted(
        {
            run.id
            for run in _windows(facts)
            if set(run.processors) & set(names) and run.start_date <= end and run.end_date >= start
        }
    )


# -- the situations ---------------------------------------------------------------------------


def _interrupted(facts: Facts) -> list[Action]:
    actions = []
    for run in facts.interrupted:
        workers = [w for w in run.processes if w.kind == "worker" and w.alive and not w.stopped_at]
        extra = f"; its {plural(len(workers), 'live worker')} keep working for it" if workers else ""
        text = (
            f"Resume interrupted run {run.id} ({', '.join(run.processors)}, {_progress(run)} done): its "
            f"controller is gone; it goes on where it stopped and reopens its failed and blocked tasks{extra}"
        )
        persistent = [g for g in facts.failures if run.id in g.runs and _persistent(facts, g)]
        if persistent and _newer_fix(facts, run.heartbeat_at) is None:
            text = (
                "Fix first: "
                + "; ".join(_persistent_errors(facts, persistent))
                + f". Then: {text[0].lower()}{text[1:]}"
            )
        actions.append(
            Action(
                "resume",
                text,
                f"runbook resume {run.id} --detach",
                WORK,
                "interrupted",
                run.id,
            )
        )
    return actions


def _persistent(facts: Facts, group: FailureGroup) -> bool:
    """Whether every date of the group failed every attempt, at least twice, with its error."""
    seen = facts.attempt_errors.get((group.processor, group.error), [])
    return bool(seen) and all(len(errors) >= 2 and set(errors) == {group.error} for errors in seen)


def _persistent_errors(facts: Facts, groups: Sequence[FailureGroup]) -> list[str]:
    """What failed the same way on every attempt, with the error line, for "Fix first:"."""
    found = []
    for group in groups:
        tries = max((len(e) for e in facts.attempt_errors.get((group.processor, group.error), [])), default=0)
        days = [d for r in group.ranges for d in _span_days(r.start, r.end)]
        found.append(
            f"{group.processor} failed every attempt ({tries} tries) on {_ranges_text(days)} with: {group.error}"
        )
    return found


def _failed_runs(facts: Facts) -> list[Action]:
    """Failed or blocked runs: ``runbook resume N`` reopens their failed and blocked tasks (and
    judges their gates again), so the downstream dates get built too."""
    order = [p.name for p in facts.processors]
    gates = [c for c in facts.checks if not c.passed and c.severity == Severity.BLOCK]
    actions = []
    for run in facts.resumable:
        dates = facts.open_dates.get(run.id, {})
        failed = [g for g in facts.failures if run.id in g.runs]
        persistent = [g for g in failed if _persistent(facts, g)]
        run_gates = [
            c for c in gates if c.run_id == run.id or (c.run_id is None and c.processor in run.processors)
        ]
        counts = {
            "failed": run.progress.failed,
            "blocked": run.progress.blocked,
            "pending": run.progress.pending + run.progress.cancelled,
        }
        what = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "its open tasks"
        building = _per_processor(dates, order)
        text = f"Resume run {run.id} ({run.status}): it reopens {what} task(s)" + (
            f" and builds {building}" if building else " and builds what waited on them"
        )
        fixes = _persistent_errors(facts, persistent)
        for check in run_gates:
            failing = "; ".join(c.expr for c in check.conditions if not c.passed) or check.error or "failed"
            days = facts.failed_check_dates.get((check.processor, check.check))
            on = f" on {_ranges_text(days)}" if days else ""
            fixes.append(f"blocking check {check.processor}.{check.check} failed{on} ({failing})")
        if fixes:
            fix = _newer_fix(facts, run.finished_at)
            if fix is not None:
                text = (
                    f"{text}. A fix was noted since it stopped ({_last(fix.text, 80)}); it failed on: "
                    + "; ".join(fixes)
                )
            else:
                text = "Fix first: " + "; ".join(fixes) + f". Then: {text[0].lower()}{text[1:]}"
        elif failed:
            errors = "; ".join(f"{g.processor}: {g.error}" for g in failed[:2])
            text = (
                f"{text} (the failures differed between attempts, or were not retried: {_last(errors, 120)})"
            )
        actions.append(Action("resume", text, f"runbook resume {run.id} --detach", WORK, "failed", run.id))
        for check in run_gates:
            actions.append(
                Action(
                    "check",
                    f"After fixing, see that {check.processor}.{check.check} passes (exit 0; 3 while it "
                    f"still fails)",
                    f"runbook validate {check.processor} --start {check.start_date} --end {check.end_date}",
                    OBSERVE,
                    "gate",
                    run.id,
                )
            )
    return actions


def _gates_without_run(facts: Facts) -> list[Action]:
    """A blocking check that fails with no run to resume (``runbook validate`` found it)."""
    held = {run.id for run in facts.resumable}
    actions = []
    for check in facts.checks:
        if check.passed or check.severity != Severity.BLOCK:
            continue
        if check.run_id in held or any(check.processor in r.processors for r in facts.resumable):
            continue
        failing = "; ".join(c.expr for c in check.conditions if not c.passed) or check.error or "failed"
        actions.append(
            Action(
                "check",
                f"Fix the data of {check.processor}: its blocking check {check.check} fails ({failing}); "
                f"then check again (exit 0 once it passes, 3 while it fails)",
                f"runbook validate {check.processor} --start {check.start_date} --end {check.end_date}",
                OBSERVE,
                "gate",
                check.run_id,
            )
        )
    return actions


def _range_actions(facts: Facts, which: str) -> list[Action]:
    """Dates never built (``which == "gaps"``) or stale, that no run will build: ``runbook run``."""
    order = [p.name for p in facts.processors]
    selected = facts.gaps if which == "gaps" else facts.stale
    claimed = _claimed(facts)
    wanted = {name: selected.get(name, set()) - claimed.get(name, set()) for name in order}
    found = segments(wanted, selected, order)
    if not found:
        return []
    flag = "--only-gaps" if which == "gaps" else "--only-stale"
    if len(found) > MAX_RANGE_ACTIONS:
        shown, rest = found[: MAX_RANGE_ACTIONS - 1], found[MAX_RANGE_ACTIONS - 1 :]
        names = [n for n in order if any(n in part[0] for part in rest)]
        merged = (names, rest[0][1], rest[-1][2], sum(part[3] for part in rest))
        found = [*shown, merged]
    actions = []
    for names, start, end, count in found:
        what = "never built" if which == "gaps" else "built with an older code version"
        text = f"Build {plural(count, 'date')} {what}: {', '.join(names)} {date_span(start, end)}"
        busy = _overlapping_runs(facts, names, start, end)
        feeding = _feeding_runs(facts, names, start, end)
        if busy:
            text += f" once run {', '.join(map(str, busy))} is done (it holds these processors and dates)"
        elif feeding:
            ups = ", ".join(sorted({up for _, up in feeding}))
            runs = ", ".join(str(r) for r in sorted({r for r, _ in feeding}))
            text += f" once run {runs} is done (it builds their upstream {ups} on these dates first)"
        if which == "stale":
            versions = {p.name: p.version for p in facts.processors if p.name in names}
            text += " (now " + ", ".join(f"{n} {v}" for n, v in versions.items() if v) + ")"
        actions.append(
            Action(
                "gaps" if which == "gaps" else "stale",
                text,
                f"runbook run {' '.join(names)} {flag} --start {start} --end {end} --detach",
                WORK,
                "never_built" if which == "gaps" else "stale",
            )
        )
    return actions


def _never_built(facts: Facts) -> list[Action]:
    return _range_actions(facts, "gaps")


def _stale(facts: Facts) -> list[Action]:
    return _range_actions(facts, "stale")


def _beyond_range(facts: Facts) -> list[Action]:
    return [
        Action(
            "extent",
            f"The source of {fact.processor} has data outside the range of run {fact.run_id}: "
            f"{_last(fact.message, 140)}; build {date_span(fact.start, fact.end)} too (and widen "
            f"calendar.start/end in runbook.yaml to keep it in reports)",
            f"runbook run {fact.processor} --start {fact.start} --end {fact.end} --detach",
            WORK,
            "beyond_range",
            fact.run_id,
        )
        for fact in facts.extent
    ]


def _paused(facts: Facts) -> list[Action]:
    """HOOK (quota pause): a run paused until a time goes on with ``runbook resume N`` after it."""
    return [
        Action(
            "resume",
            f"Run {run.id} is paused by the warehouse's quota until {until}: resume it after that time",
            f"runbook resume {run.id} --detach",
            WORK,
            "quota_pause",
            run.id,
        )
        for run, until in facts.paused
    ]


def _downstream(facts: Facts, name: str) -> list[str]:
    """The processors that need ``name``, directly or not, in config order."""
    return [p.name for p in facts.processors if name in _upstreams(facts, p.name)]


def _failed_check_dates(facts: Facts) -> list[Action]:
    """Per-date checks: rebuild the dates a check failed on, with everything downstream of them
    (built from the same data, or blocked by the check)."""
    severity = {(c.processor, c.check): c.severity for c in facts.checks}
    actions = []
    for (processor, check), days in sorted(facts.failed_check_dates.items()):
        if not days:
            continue
        names = [processor, *_downstream(facts, processor)]
        warn = (
            " (a warning: nothing was blocked)" if severity.get((processor, check)) == Severity.WARN else ""
        )
        for first, last, count in _consecutive(days):
            text = (
                f"Rebuild {plural(count, 'date')} of {processor} whose check {check} failed{warn}: "
                f"{date_span(first, last)}, once the cause is fixed"
            )
            if len(names) > 1:
                text += f"; {', '.join(names[1:])} downstream too"
            busy = [r.id for r in [*facts.running, *facts.interrupted] if set(r.processors) & set(names)
                    and r.start_date <= last and r.end_date >= first]  # fmt: skip
            if busy:
                text += f", once run {', '.join(map(str, busy))} is done"
            actions.append(
                Action(
                    "rebuild",
                    text,
                    f"runbook run {' '.join(names)} --no-resume --start {first} --end {last} --detach",
                    WORK,
                    "check_dates",
                )
            )
    return actions


def _running(facts: Facts) -> list[Action]:
    actions = []
    for run in facts.running:
        owner = run.owner
        where = f"PID {owner.pid or '—'} on {owner.host or '?'}"
        alive = "alive" if run.alive else "not answering" if run.alive is False else "liveness unknown here"
        workers = [w for w in run.processes if w.kind == "worker" and w.alive and not w.stopped_at]
        helpers = f", helped by {plural(len(workers), 'worker')}" if workers else ""
        text = (
            f"Run {run.id} is {run.status} ({', '.join(run.processors)}: {_progress(run)}; {where}, "
            f"{alive}{helpers}): let it finish and check on it (returns at once)"
        )
        if facts.host and owner.host and owner.host != facts.host:
            # A busy owner: another machine's live controller owns the run.
            text += (
                f". Another machine owns it: `runbook resume {run.id}` exits 5 (busy); "
                f"`runbook worker --run {run.id} --idle-exit 60` helps it from here"
            )
        actions.append(Action("watch", text, "runbook status --json", OBSERVE, "running", run.id))
    return actions


def _warn_checks(facts: Facts) -> list[Action]:
    actions = []
    for check in facts.checks:
        if check.passed or check.severity == Severity.BLOCK:
            continue
        failing = "; ".join(c.expr for c in check.conditions if not c.passed) or check.error or "failed"
        actions.append(
            Action(
                "check",
                f"Look into warning check {check.processor}.{check.check} ({failing}); it does not block",
                f"runbook checks history {check.processor} --json",
                OBSERVE,
                "warn_check",
                check.run_id,
            )
        )
    return actions


def _nothing_to_do(facts: Facts) -> list[Action]:
    if facts.running or facts.interrupted or facts.resumable or facts.paused:
        return []
    if any(facts.gaps.values()) or any(facts.stale.values()) or facts.extent:
        return []
    if any(not c.passed and c.severity == Severity.BLOCK for c in facts.checks):
        return []
    if facts.processors and all(p.expected is None for p in facts.processors):
        return [
            Action(
                "start",
                "No date range yet: set calendar.start and calendar.end in runbook.yaml (then the gaps "
                "to build are listed here), or start a run with --start and --end",
                None,
                NOTE,
                "no_range",
            )
        ]
    if any(p.failed or p.blocked for p in facts.processors):
        return []
    return [
        Action(
            "done",
            "Nothing to do: every expected date of every processor is built with its current code version",
            None,
            NOTE,
            "nothing_to_do",
        )
    ]


def _next_notes(facts: Facts) -> list[Action]:
    return [
        Action("note", f"Noted for next time: {note.text}", None, NOTE, "note")
        for note in facts.notes.get("next", [])
    ]


# In this order within each kind of action (work, observe, note).
SITUATIONS: list[Situation] = [
    Situation("interrupted", _interrupted),
    Situation("quota_pause", _paused),  # HOOK: filled by the quota pause (facts.paused)
    Situation("check_dates", _failed_check_dates),  # per-date checks: rebuild before resuming what they block
    Situation("failed", _failed_runs),  # failed after retries (same error or not), blocked downstream, gates
    Situation("gate", _gates_without_run),
    Situation("never_built", _never_built),
    Situation("stale", _stale),
    Situation("beyond_range", _beyond_range),
    Situation("running", _running),  # also a busy owner (another machine) and its workers
    Situation("warn_check", _warn_checks),
    Situation("nothing_to_do", _nothing_to_do),
    Situation("note", _next_notes),
]


__all__ = [
    "SITUATIONS",
]
