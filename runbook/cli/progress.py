"""Live progress bars for a run in the foreground (rich is imported only by commands that run)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


class ProgressBars:
    """A controller observer drawing one bar per processor: done/total, failed, rate, ETA."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.display = Progress(
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
            self.bars[name] = self.display.add_task(
                name, total=sum(counts.values()), completed=done, detail=self._detail(name)
            )
        self.display.start()

    def _detail(self, name: str) -> str:
        counts = self.counts[name]
        return " ".join(f"[red]{counts[k]} {k}[/]" for k in ("failed", "blocked") if counts[k])

    def progress(self, totals: dict[str, Counter[str]]) -> None:
        """Set each bar from the store's counts (other processes may be working on the run)."""
        for name, counts in totals.items():
            if name not in self.bars:
                continue
            done = sum(counts[k] for k in ("succeeded", "failed", "skipped", "blocked", "cancelled"))
            self.counts[name] = Counter({k: v for k, v in counts.items() if k in ("failed", "blocked")})
            self.progress_bar(name, done)

    def progress_bar(self, name: str, done: int) -> None:
        self.display.update(self.bars[name], completed=done, detail=self._detail(name))

    def task_finished(self, processor: str, status: str) -> None:
        self.counts.setdefault(processor, Counter())[status] += 1
        if processor in self.bars:
            self.display.update(self.bars[processor], advance=1, detail=self._detail(processor))

    def message(self, text: str) -> None:
        self.display.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def finished(self) -> None:
        self.display.stop()
