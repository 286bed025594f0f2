"""Human output: rich tables for the views, and live progress bars for a foreground run."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from runbook.formatting import duration

STATUS_STYLE = {
    "succeeded": "green",
    "running": "cyan",
    "queued": "cyan",
    "failed": "red",
    "blocked": "yellow",
    "interrupted": "magenta",
    "cancelled": "dim",
}


def _status(text: str) -> str:
    style = STATUS_STYLE.get(text)
    return f"[{style}]{text}[/]" if style else text


def _ago(stamp: str | None) -> str:
    if not stamp:
        return "-"
    when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = int((dt.datetime.now(dt.UTC) - when).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def runs_table(runs: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (
        "run",
        "status",
        "processors",
        "dates",
        "progress",
        "rate/h",
        "ETA",
        "PID",
        "heartbeat",
        "log",
    ):
        table.add_column(column, overflow="fold")
    for run in runs:
        p = run["progress"]
        bits = [f"{p['done']}/{p['total']}"]
        bits += [f"{p[k]} {k}" for k in ("failed", "blocked", "running", "skipped") if p[k]]
        pid = str(run["pid"] or "-") + ("" if run["controller_alive"] or not run["pid"] else " (dead)")
        table.add_row(
            str(run["id"]),
            _status(run["status"]),
            ", ".join(run["processors"]),
            f"{run['start_date']}..{run['end_date']}",
            ", ".join(bits),
            f"{run['rate_per_hour']:.0f}" if run["rate_per_hour"] else "-",
            duration(run["eta_seconds"], "-"),
            pid,
            _ago(run["heartbeat_at"]),
            run["log_path"] or "-",
        )
    return table


def show(console: Console, view: dict[str, Any]) -> None:
    run = view["run"]
    console.print(runs_table([run], f"Run {run['id']}"))
    if run["command_line"]:
        console.print(f"command: {run['command_line']}")
    if run["error"]:
        console.print(f"note: {run['error']}")
    table = Table(title="Processors", title_justify="left")
    for column in ("processor", "version", "total", "succeeded", "failed", "blocked", "pending", "skipped"):
        table.add_column(column)
    for name, counts in view["processors"].items():
        skipped = ", ".join(
            f"{v} {k.removeprefix('skipped_')}" for k, v in sorted(counts.items()) if k.startswith("skipped_")
        )
        table.add_row(
            name,
            run["versions"].get(name, "-"),
            str(counts["total"]),
            str(counts.get("succeeded", 0)),
            str(counts.get("failed", 0)),
            str(counts.get("blocked", 0)),
            str(counts.get("pending", 0) + counts.get("running", 0)),
            skipped or "0",
        )
    console.print(table)
    for failure in view["failures"]:
        span = (
            failure["date"]
            if failure["date"] == failure["end_date"]
            else f"{failure['date']}..{failure['end_date']}"
        )
        console.print(
            f"[red]FAILED[/] {failure['processor']} {span} (attempt {failure['attempt']}, exit {failure['exit_code']})"
        )
        for line in (failure["error_tail"] or "").splitlines()[-8:]:
            console.print(f"    {line}", markup=False, highlight=False)
    if view["events"]:
        table = Table(title="Events", title_justify="left")
        for column in ("at", "event", "processor", "date", "message"):
            table.add_column(column, overflow="fold")
        for event in view["events"][-30:]:
            table.add_row(
                event["at"],
                event["kind"],
                event["processor"] or "",
                event["date"] or "",
                Text(event["message"]),
            )
        console.print(table)


def plan(console: Console, view: dict[str, Any], *, verbose: bool) -> None:
    table = Table(title=f"Plan {view['start']}..{view['end']}", title_justify="left")
    reasons = sorted({k for counts in view["counts"].values() for k in counts if k != "planned"})
    for column in ("processor", "version", "to run", *[f"skip: {r}" for r in reasons]):
        table.add_column(column)
    for name in view["processors"]:
        counts = view["counts"][name]
        table.add_row(
            name, view["versions"][name], str(counts["planned"]), *[str(counts.get(r, 0)) for r in reasons]
        )
    console.print(table)
    if verbose and view["dates"]:
        dates = Table(title="Dates", title_justify="left")
        for column in ("processor", "date", "action", "reason"):
            dates.add_column(column)
        for row in view["dates"]:
            span = row["date"] if row["date"] == row["end_date"] else f"{row['date']}..{row['end_date']}"
            dates.add_row(row["processor"], span, row["action"], row["reason"] or "")
        console.print(dates)


class ProgressBars:
    """A controller observer drawing one bar per processor: done/total, failed, rate, ETA."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<32}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.bars: dict[str, TaskID] = {}
        self.counts: dict[str, Counter[str]] = {}

    def started(self, run_id: int, totals: dict[str, Counter[str]]) -> None:
        self.console.print(f"run {run_id}: {sum(sum(c.values()) for c in totals.values())} task(s)")
        for name, counts in totals.items():
            done = sum(counts[k] for k in ("succeeded", "failed", "skipped", "blocked", "cancelled"))
            self.counts[name] = Counter({k: v for k, v in counts.items() if k in ("failed", "blocked")})
            self.bars[name] = self.progress.add_task(
                name, total=sum(counts.values()), completed=done, detail=self._detail(name)
            )
        self.progress.start()

    def _detail(self, name: str) -> str:
        counts = self.counts[name]
        return " ".join(f"[red]{counts[k]} {k}[/]" for k in ("failed", "blocked") if counts[k])

    def task_finished(self, processor: str, status: str) -> None:
        self.counts.setdefault(processor, Counter())[status] += 1
        if processor in self.bars:
            self.progress.update(self.bars[processor], advance=1, detail=self._detail(processor))

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def finished(self) -> None:
        self.progress.stop()
