"""Human output: the snapshots as plain text that fits the terminal (80 columns in a pipe).

A run takes two lines at any width: what and how far, then who runs it and how fast. Nothing
here imports more than the standard library, so commands that print answer at once.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from runbook.expectations import show as metric
from runbook.formatting import bursts, duration, number, plural, span
from runbook.kinds import ACTIVE_RUN_STATUSES, RunStatus

STATUS_COLOR = {
    RunStatus.SUCCEEDED: "32",
    RunStatus.RUNNING: "36",
    RunStatus.QUEUED: "36",
    RunStatus.FAILED: "31",
    RunStatus.BLOCKED: "33",
    RunStatus.INTERRUPTED: "35",
    RunStatus.CANCELLED: "2",
}
LIVE = (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.INTERRUPTED)
INDENT = "    "


def width() -> int:
    """The terminal's width: ``COLUMNS`` if set, else the terminal's, else 80 (a pipe, as agents read)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        columns = 80
    return max(columns, 40)


def color_enabled() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, code: str | None) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if code and color_enabled() else text


def fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def processors_summary(names: Sequence[str], room: int) -> str:
    """``a, b`` when it fits in ``room``, else the first names and ``+N``, else ``N processors``."""
    if len(names) == 1:
        return fit(names[0], room)
    whole = ", ".join(names)
    if len(whole) <= room:
        return whole
    for shown in range(len(names) - 1, 0, -1):
        text = ", ".join(names[:shown]) + f" +{len(names) - shown}"
        if len(text) <= room:
            return text
    return f"{len(names)} processors"


def progress_text(progress: dict[str, Any], active: bool = True) -> str:
    """``742/742 built (1,856 skipped)``, then failed, blocked and running counts. Tasks still
    marked running in a run that is not active were in flight when it stopped: they run again
    when it resumes, and are said so (``2 in flight``)."""
    text = f"{number(progress['succeeded'])}/{number(progress['work'])} built"
    if progress["skipped"]:
        text += f" ({number(progress['skipped'])} skipped)"
    extra = [f"{number(progress[k])} {k}" for k in ("failed", "blocked") if progress[k]]
    if progress["running"]:
        extra.append(f"{number(progress['running'])} {'running' if active else 'in flight'}")
    return ", ".join([text, *extra])


def ago(stamp: str | None) -> str:
    if not stamp:
        return "-"
    seconds = int(
        (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()
    )
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def liveness_text(run: dict[str, Any]) -> str | None:
    """``PID 123 alive`` (``on HOST`` when elsewhere) for a live run; None once it has ended."""
    pid = run["owner"]["pid"]
    if run["status"] not in LIVE:
        return None
    adopted = run.get("adopted")
    if adopted and adopted["following"]:
        known = adopted["process_alive"]
        state = ("alive" if run["alive"] else "gone") if known is None else "alive" if known else "ended"
        watcher = " (watcher gone)" if adopted["watcher_alive"] is False and known else ""
        return f"adopted PID {adopted['pid']} {state}{watcher}" + (
            f", log at {adopted['reached']}" if adopted["reached"] else ""
        )
    if run["alive"] is None or not pid:
        return "not started" if run["status"] == RunStatus.QUEUED else "no controller"
    state = "alive" if run["alive"] else "gone"
    host = run["owner"]["host"]
    return f"PID {pid} {state}" + ("" if host in (None, _hostname()) else f" on {host}")


def _hostname() -> str:
    import socket

    return socket.gethostname()


def run_lines(run: dict[str, Any], columns: int) -> list[str]:
    """Two lines for one run: id, status and progress; then dates, processors, PID, rate, ETA,
    heartbeat or end, log. On a narrow terminal the processors are summarised (``+3``,
    ``6 processors``), then the log, the heartbeat and the processors are left out, in that order,
    before PID, rate and ETA are cut (a cut path is of no use; `runbook show N` has every fact)."""
    status = run["status"]
    progress = progress_text(run["progress"], active=status in ACTIVE_RUN_STATUSES)
    first = fit(f"{run['id']:<5} {status:<11} {progress}", columns)
    first = first.replace(status, paint(status, STATUS_COLOR.get(status)), 1)
    dates = span(run["start_date"], run["end_date"])
    facts = [liveness_text(run)]
    if run["tasks_per_hour"] is not None:
        facts.append(f"{number(run['tasks_per_hour'])} tasks/h")
    if run["eta_seconds"] is not None:
        facts.append(f"ETA {duration(run['eta_seconds'])}")
    extras = []
    if status in ACTIVE_RUN_STATUSES:
        extras.append(f"heartbeat {ago(run['heartbeat_at'])}")
    elif run["finished_at"]:
        extras.append(f"ended {ago(run['finished_at'])}")
    if run["log_path"]:
        extras.append(f"log {run['log_path']}")
    bits = [fact for fact in facts if fact]
    least = len(f"{len(run['processors'])} processors")

    def room(shown: list[str]) -> int:  # what the processors get beside ``shown``
        return columns - len(INDENT) - len(dates) - sum(len(bit) + 3 for bit in shown) - 3

    named = room(bits) >= least  # the processors come after PID, rate and ETA
    for extra in extras:
        if room([*bits, extra]) < (least if named else 0):
            break
        bits.append(extra)
    if named:
        bits.insert(0, processors_summary(run["processors"], room(bits)))
    return [first, fit(INDENT + " · ".join([dates, *bits]), columns)]


def runs_text(runs: Iterable[dict[str, Any]], columns: int | None = None) -> list[str]:
    columns = columns or width()
    lines = [fit("RUN   STATUS      PROGRESS (tasks)", columns)]
    for run in runs:
        lines += run_lines(run, columns)
    return lines


def packed(title: str, items: Sequence[str], columns: int) -> list[str]:
    """``title`` and the items separated by commas, on as many lines as they need (continuation
    lines indented under the first item); an item longer than a line is cut."""
    indent = " " * len(title)
    lines = [title]
    for item in items:
        last = lines[-1]
        fresh = last in (title, indent)
        text = item if fresh else f", {item}"
        if not fresh and len(last) + len(text) + 1 > columns:  # room for the trailing comma
            lines[-1] = last + ","
            lines.append(indent)
            text = item
        lines[-1] += text
    return [fit(line, columns) for line in lines]


def show_text(detail: dict[str, Any], columns: int | None = None) -> list[str]:
    """``runbook show``: the run, its processors, failures by error, blocked dates, events."""
    columns = columns or width()
    run = detail["run"]
    lines = runs_text([run], columns)
    if run["command_line"]:
        lines.append(fit(f"command: {run['command_line']}", columns))
    if run["error"]:
        lines.append(fit(f"note: {run['error']}", columns))
    versions = [f"{entry['name']}={entry['version']}" for entry in run["per_processor"] if entry["version"]]
    if versions:
        lines += packed("versions: ", versions, columns)
    for process in run["processes"]:
        state = "stopped" if process["stopped_at"] else "alive" if process["alive"] else "gone"
        running = f", {process['running']:,} running" if process["running"] else ""
        note = f" ({process['note']})" if process["note"] else ""
        lines.append(
            fit(
                f"{process['kind']} {process['pid']} on {process['host']}: {state},"
                f" {process['tasks_done']:,} done{running}{note}",
                columns,
            )
        )
    lines += [
        "",
        f"{'PROCESSOR':<26} {'BUILT':>7} {'WORK':>7} {'FAILED':>6} {'BLOCKED':>7} {'LEFT':>6}  SKIPPED",
    ]
    for entry in run["per_processor"]:
        p = entry["progress"]
        skipped = ", ".join(f"{n:,} {reason}" for reason, n in entry["skipped"].items())
        row = (
            f"{fit(entry['name'], 26):<26} {p['succeeded']:>7,} {p['work']:>7,} {p['failed']:>6,} {p['blocked']:>7,}"
            f" {p['pending'] + p['running']:>6,}  {skipped or '0'}"
        )
        lines.append(fit(row, columns))
    costs = [(entry["name"], entry["cost"]) for entry in run["per_processor"] if entry.get("cost")]
    if costs:
        from runbook.formatting import human_bytes

        lines += ["", f"{'WAREHOUSE COST':<26} {'PROCESSED':>10} {'BILLED':>10} {'SLOT HOURS':>10}"]
        for name, cost in [*costs, ("(run)", run["cost"])]:
            lines.append(
                fit(
                    f"{fit(name, 26):<26} {human_bytes(cost['bytes_processed']):>10} "
                    f"{human_bytes(cost['bytes_billed']):>10} {cost['slot_ms'] / 3_600_000:>10.2f}",
                    columns,
                )
            )
    if run.get("resume_after"):
        lines.append(fit(f"resume after: {run['resume_after']} (a daily warehouse quota)", columns))
    for group in detail["failures"]:
        where = ranges_text(group["ranges"])
        lines += [
            "",
            fit(
                f"FAILED {group['processor']} on {where} ({plural(group['tasks'], 'task')}): {group['error']}",
                columns,
            ),
        ]
        lines += [fit(INDENT + line, columns) for line in group["error_tail"].splitlines()[-8:]]
    for group in detail["blocked"]:
        where = ranges_text(group["ranges"])
        lines.append(
            fit(
                f"BLOCKED {group['processor']} on {where} ({plural(group['tasks'], 'task')}): {group['reason']}",
                columns,
            )
        )
    if detail["checks"]:
        lines += ["", *check_lines(detail["checks"], "Checks:", columns)]
    if detail["events"]:
        lines += ["", "Events:", *event_lines(detail["events"], columns)]
    return lines


def event_lines(events: Sequence[dict[str, Any]], columns: int, limit: int = 30) -> list[str]:
    """The newest ``limit`` lines of a run's events. Three or more events in a row of one kind and
    processor (a check passing window after window, dates retried one after another) are one line:
    the last of them, with their count, so that the run's own events stay in view."""
    lines: list[str] = []
    for event in bursts(events):
        at = (event["at"] or "")[11:19]
        kind = event["kind"] if event["count"] == 1 else f"{event['kind']} ×{event['count']}"
        processor = event["processor"]
        where = " ".join(filter(None, [processor, event["date"]]))
        # "check P.name passed" under P reads "check name passed"; "P D attempt 1 failed" under
        # "P D" reads "attempt 1 failed".
        message = event["message"].replace(f"{processor}.", "", 1) if processor else event["message"]
        if where and message.startswith(where + " "):
            message = message[len(where) + 1 :].lstrip(": ")
        lines.append(fit(f"  {at} {kind:<16} {where + ': ' if where else ''}{message}", columns))
    return lines[-limit:]


def ranges_text(found: Sequence[dict[str, Any]], limit: int = 3) -> str:
    text = ", ".join(span(r["start"], r["end"]) for r in found[:limit])
    return text + (f" +{len(found) - limit} more" if len(found) > limit else "")


def plan_text(plan: dict[str, Any], *, dates: bool, columns: int | None = None) -> list[str]:
    """The plan's table: a column per skip reason, as wide as its name or its largest count; the
    processor names get what is left of the terminal (at least 12 characters, at most 30)."""
    columns = columns or width()
    reasons = sorted({k for counts in plan["counts"].values() for k in counts if k != "planned"})
    sizes = {
        r: max(len(r), *(len(f"{plan['counts'][name].get(r, 0):,}") for name in plan["processors"]))
        for r in reasons
    }
    rest = 1 + 14 + 1 + 7 + sum(size + 1 for size in sizes.values())
    longest = max((len(name) for name in plan["processors"]), default=9)
    room = max(12, min(30, longest, columns - rest))
    lines = [f"Plan {plan['start']}..{plan['end']}"]
    header = f"{'PROCESSOR':<{room}} {'VERSION':<14} {'TO RUN':>7}" + "".join(
        f" {r:>{sizes[r]}}" for r in reasons
    )
    lines.append(header)
    for name in plan["processors"]:
        counts = plan["counts"][name]
        row = f"{fit(name, room):<{room}} {fit(plan['versions'][name], 14):<14} {counts['planned']:>7,}"
        row += "".join(f" {counts.get(r, 0):>{sizes[r]},}" for r in reasons)
        lines.append(row)
    if dates and plan["dates"]:
        lines.append("")
        for row in plan["dates"]:
            lines.append(
                f"{fit(row['processor'], room):<{room}} {span(row['date'], row['end_date']):<22} {row['action']:<5} {row['reason'] or ''}".rstrip()
            )
    return lines


def condition_text(condition: dict[str, Any]) -> str:
    """``pct_populated >= 45 (42.9 >= 45)`` (or the parts of a compound condition)."""
    if condition.get("op") is not None:
        return f"{condition['expr']} ({metric(condition['value'])} {condition['op']} {metric(condition['threshold'])})"
    parts = "; ".join(condition_text(part) for part in condition.get("parts") or [])
    return f"{condition['expr']} ({parts})" if parts else str(condition["expr"])


def verdict(check: dict[str, Any]) -> str:
    if check["passed"]:
        return paint("pass", "32")
    return paint("FAIL", "31") if check["severity"] == "block" else paint("warn", "33")


def check_detail(check: dict[str, Any]) -> str:
    if check["error"]:
        return f"error: {check['error']}"
    if check.get("per_date"):
        total = check["metrics"].get("dates", 0)
        ranges = check.get("failed_dates") or []
        if not ranges:
            return f"passed on all {total} date(s)"
        failed = sum(int(r["dates"]) for r in ranges)
        return f"failed on {failed} of {total} date(s)"
    return "; ".join(condition_text(c) for c in check["conditions"] if not c["passed"] or check["passed"])


MAX_RANGE_LINES = 10


def check_lines(checks: Iterable[dict[str, Any]], title: str, columns: int | None = None) -> list[str]:
    """One line per check: verdict, processor.check (severity), the conditions with their values;
    under a per-date check its failed dates as ranges with their values, then sample rows."""
    lines = [title]
    for check in checks:
        name = f"{check['processor']}.{check['check']} ({check['severity']})"
        lines.append(f"  {verdict(check)}  {name}: {check_detail(check)}")
        lines += check_extra_lines(check)
    return lines


def check_extra_lines(check: dict[str, Any], indent: str = "        ") -> list[str]:
    """The failed date ranges, the dates a rebuild changed and the sample rows of one check."""
    lines: list[str] = []
    ranges = check.get("failed_dates") or []
    for entry in ranges[:MAX_RANGE_LINES]:
        lines.append(f"{indent}{entry['text']}")
    if len(ranges) > MAX_RANGE_LINES:
        lines.append(f"{indent}... and {len(ranges) - MAX_RANGE_LINES} more range(s) (--json lists them all)")
    for sample in check.get("samples") or []:
        where = f" {sample['date']}" if sample.get("date") else ""
        if sample.get("error"):
            lines.append(f"{indent}sample{where}: the sample query failed: {sample['error']}")
            continue
        more = " (more rows exist)" if sample.get("more") else ""
        lines.append(f"{indent}sample rows{where}{more}:")
        for row in sample.get("rows") or []:
            lines.append(f"{indent}  " + ", ".join(f"{key}={metric(value)}" for key, value in row.items()))
    return lines


def check_history_lines(checks: Iterable[dict[str, Any]], columns: int | None = None) -> list[str]:
    columns = columns or width()
    lines: list[str] = []
    for entry in checks:
        lines.append(f"{entry['processor']}.{entry['check']} ({entry['severity']})")
        for name, values in entry["series"].items():
            lines.append(fit(f"  {name}: {' -> '.join(metric(v) for v in values)}", columns))
        for result in entry["results"]:
            run = f"run {result['run_id']}" if result["run_id"] is not None else "validate"
            at = (result["at"] or "-")[:19].replace("T", " ")
            detail = (
                f"error: {result['error']}"
                if result["error"]
                else ", ".join(f"{k}={metric(v)}" for k, v in result["metrics"].items())
            )
            lines.append(
                fit(
                    f"  {at}  {run:<9} {result['start_date']}..{result['end_date']}  {verdict(result)}  {detail}",
                    columns,
                )
            )
            for entry in (result.get("failed_dates") or [])[:MAX_RANGE_LINES]:
                lines.append(fit(f"      failed {entry['text']}", columns))
    return lines


def coverage_lines(view: dict[str, Any], list_dates: bool = False, max_ranges: int = 20) -> list[str]:
    """``runbook coverage`` for people: a summary, then gaps, stale dates and failing checks as ranges."""
    s = view["summary"]
    skips = ", ".join(f"{n} {reason}" for reason, n in s["calendar_skips"].items())
    pct = "-" if s["percent"] is None else f"{s['percent']}%"
    lines = [
        f"{view['processor']} {view['start']}..{view['end']}, code version {view['code_version']}",
        f"  {s['expected']} dates expected" + (f" ({skips} not expected)" if skips else "")
        + f"; {s['built']} built ({pct}): {s['current']} current, {s['stale']} stale; {s['gaps']} never built"
        + (f"; newest attempt failed on {s['failed']}" if s["failed"] else ""),
    ]  # fmt: skip
    sections = (
        ("gaps", "never built:", "{dates} {noun} never built"),
        ("stale", f"stale (built with an older code version than {view['code_version']}):", "{dates} {noun} built with {versions}"),
        ("failing_checks", "failing checks (newest result per date):", "{check} failed on {dates} {noun}"),
    )  # fmt: skip
    for key, title, line in sections:
        if view[key]:
            lines.append(title)
        for found in view[key][:max_ranges]:
            noun = "date" if found["dates"] == 1 else "dates"
            versions = ", ".join(found.get("code_versions", []))
            lines.append(
                f"  {span(found['start'], found['end'])}: "
                + line.format(**found, noun=noun, versions=versions)
            )
        if len(view[key]) > max_ranges:
            lines.append(f"  ... {len(view[key]) - max_ranges} more ranges (all of them with --json)")
    for key, label in (("fill_gaps", "fill gaps"), ("rebuild_stale", "rebuild stale")):
        if view["commands"][key]:
            lines.append(f"{label}: {view['commands'][key]}")
    if list_dates:
        lines.append("")
        lines += [_date_line(d) for d in view["dates"]]
    return lines


def _date_line(d: dict[str, Any]) -> str:
    if not d["expected"]:
        state = d["calendar_skip"]
    else:
        state = "stale" if d["stale"] else "built" if d["built"] else "gap"
    if d["built"]:
        detail = f"run {d['run_id']} {d['built_at']} {d['code_version']}"
    else:
        attempt = f"last attempt {d['last_attempt']}" if d["last_attempt"] else None
        detail = " ".join(filter(None, [d["skip_reason"], attempt]))
    checks = " ".join(f"{c['check']}={'ok' if c['passed'] else 'FAILED'}" for c in d["checks"])
    return f"{d['date']}  {state:<9} {detail}  {checks}".rstrip()
