"""Validation checks: run a processor's ``checks:`` on the warehouse, judge them, store every result.

A check is a query returning one row of named metrics (``@start``/``@end`` bound to the range) and
a list of ``expect:`` conditions on them (:mod:`runbook.expectations`), with the calendar's values
``expected_dates``, ``calendar_dates`` and ``range_days`` available beside the metrics. Each
evaluation becomes one :class:`~runbook.state.models.CheckResult`: the metrics, each condition
with both sides' values, the query text and its parameters, or the error when the query failed
(which fails the check).

:class:`CheckRunner` is the controller's ``Gatekeeper``: when a processor's part of a run has
finished, the controller asks it to run that processor's checks; a failed ``block`` check stops
everything downstream, a failed ``warn`` check is recorded, logged and shown, and work goes on.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.clock import utcnow
from runbook.config import CheckConfig
from runbook.engine.calendar import Calendar
from runbook.errors import ConfigError, UsageError
from runbook.expectations import CALENDAR_NAMES, Condition, Expectation, ExpressionError
from runbook.kinds import Severity
from runbook.runlog import RunLog
from runbook.state.records import CheckResult
from runbook.state.store import Store
from runbook.warehouse import Warehouse
from runbook.workspace import Workspace

if TYPE_CHECKING:
    from runbook.engine.seams import Gatekeeper

BLOCK = Severity.BLOCK


@dataclass(frozen=True)
class CheckSpec:
    """One configured check with its parsed conditions and where it sits in runbook.yaml."""

    processor: str
    index: int
    config: CheckConfig
    expectations: tuple[Expectation, ...]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def severity(self) -> str:
        return self.config.severity

    @property
    def path(self) -> str:
        return f"processors.{self.processor}.checks.{self.index}"


def compile_checks(workspace: Workspace) -> dict[str, list[CheckSpec]]:
    """Every processor's checks with their conditions parsed; a bad condition is a ConfigError."""
    file = str(workspace.config_path)
    found: dict[str, list[CheckSpec]] = {}
    for name, proc in workspace.config.processors.items():
        seen: set[str] = set()
        for index, check in enumerate(proc.checks):
            path = f"processors.{name}.checks.{index}"
            if check.name in seen:
                raise ConfigError(f"duplicate check name {check.name!r}", file=file, path=f"{path}.name")
            seen.add(check.name)
            parsed = []
            for number, text in enumerate(check.expect):
                try:
                    parsed.append(Expectation.parse(text))
                except ExpressionError as exc:
                    raise ConfigError(str(exc), file=file, path=f"{path}.expect.{number}") from None
            found.setdefault(name, []).append(CheckSpec(name, index, check, tuple(parsed)))
    return found


@dataclass
class CheckRun:
    """A stored result, plus the config error when a condition named an unknown value."""

    result: CheckResult
    conditions: list[Condition]
    config_error: ConfigError | None = None

    @property
    def blocking_failure(self) -> bool:
        return not self.result.passed and self.result.severity == BLOCK

    def summary(self) -> str:
        """``usage_rate_coverage: pct_populated >= 45 (42.9 >= 45)`` for what made it fail."""
        name = self.result.check_name
        if self.result.error:
            return f"{name}: {self.result.error}"
        failed = [c.explain() for c in self.conditions if not c.passed]
        return f"{name}: {'; '.join(failed or [c.explain() for c in self.conditions])}"


class CheckRunner:
    """Runs checks on the warehouse and stores their results (the controller's Gatekeeper).

    ``warehouse`` and ``calendar`` are callables so that nothing is opened or queried until a
    check runs: ``Runner.warehouse`` and ``Runner.calendar`` in practice. ``announce`` receives
    one line per check (the CLI's progress display).
    """

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        warehouse: Callable[[], Warehouse],
        calendar: Callable[[dt.date, dt.date], Calendar],
        *,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.config = workspace.config
        self.store = store
        self.warehouse = warehouse
        self.calendar = calendar
        self.announce = announce or (lambda line: None)
        self.specs = compile_checks(workspace)
        self._calendars: dict[tuple[dt.date, dt.date], Calendar] = {}
        self._lock = threading.Lock()

    def has_checks(self, processor: str) -> bool:
        return bool(self.specs.get(processor))

    def blocking(self, processor: str) -> bool:
        """Whether the downstream must wait for this processor's checks: it has a ``block`` check."""
        return any(spec.severity == BLOCK for spec in self.specs.get(processor, []))

    def run_checks(self, processor: str, run_id: int | None, start: dt.date, end: dt.date) -> list[str]:
        """Run ``processor``'s checks over [start, end]; messages of the failed ``block`` ones."""
        return [run.summary() for run in self.evaluate(processor, run_id, start, end) if run.blocking_failure]

    def evaluate(self, processor: str, run_id: int | None, start: dt.date, end: dt.date) -> list[CheckRun]:
        """Run, store, log and announce each check of ``processor``; return the outcomes."""
        runs = [self._run_one(spec, run_id, start, end) for spec in self.specs.get(processor, [])]
        if runs:
            self._report(processor, run_id, runs)
        return runs

    def validate(self, processors: Sequence[str], start: dt.date, end: dt.date) -> list[CheckRun]:
        """``runbook validate``: the checks of ``processors`` (all by default), stored without a run."""
        unknown = [name for name in processors if name not in self.config.processors]
        if unknown:
            known = ", ".join(self.config.processors)
            raise UsageError(f"unknown processor {unknown[0]!r} (known: {known})")
        names = [name for name in self.config.order() if name in (processors or self.config.processors)]
        return [run for name in names for run in self.evaluate(name, None, start, end)]

    # -- one check -------------------------------------------------------------------------------

    def _run_one(self, spec: CheckSpec, run_id: int | None, start: dt.date, end: dt.date) -> CheckRun:
        params = {"start": start, "end": end}
        metrics: dict[str, Any] = {}
        conditions: list[Condition] = []
        error: str | None = None
        config_error: ConfigError | None = None
        warehouse = self.warehouse()  # a warehouse that cannot be opened is an error, not a result
        try:
            rows = warehouse.query(spec.config.query, params)
            if len(rows) != 1:
                raise ValueError(f"the check query returned {len(rows)} rows; it must return exactly one")
            metrics = dict(rows[0])
            config_error = self._unknown_names(spec, metrics)
            if config_error is None:
                values = {**self._calendar_values(spec, start, end), **metrics}
                conditions = [expectation.evaluate(values) for expectation in spec.expectations]
        except Exception as exc:  # noqa: BLE001 - a query that fails is a failed check, recorded
            error = " ".join(str(exc).split()) or type(exc).__name__
        if config_error is not None:
            error = config_error.message
        result = self.store.add_check_result(
            run_id=run_id,
            processor=spec.processor,
            check_name=spec.name,
            severity=spec.severity,
            passed=error is None and all(condition.passed for condition in conditions),
            start_date=start.isoformat(),
            end_date=end.isoformat(),
            metrics={key: _json_value(value) for key, value in metrics.items()},
            conditions=[condition.as_dict() for condition in conditions],
            query=spec.config.query,
            params={key: value.isoformat() for key, value in params.items()},
            error=error,
            at=utcnow(),
        )
        return CheckRun(result, conditions, config_error)

    def _unknown_names(self, spec: CheckSpec, metrics: dict[str, Any]) -> ConfigError | None:
        for number, expectation in enumerate(spec.expectations):
            unknown = sorted(expectation.names - metrics.keys() - set(CALENDAR_NAMES))
            if unknown:
                return ConfigError(
                    f"check {spec.name!r}: condition {expectation.text!r} uses unknown name {unknown[0]!r} "
                    f"(metrics of the query: {', '.join(metrics) or 'none'}; "
                    f"calendar values: {', '.join(CALENDAR_NAMES)})",
                    file=str(self.workspace.config_path),
                    path=f"{spec.path}.expect.{number}",
                )
        return None

    def _calendar_values(self, spec: CheckSpec, start: dt.date, end: dt.date) -> dict[str, int]:
        wanted = set().union(*(e.names for e in spec.expectations)) & set(CALENDAR_NAMES)
        if not wanted:
            return {}
        with self._lock:
            calendar = self._calendars.get((start, end))
        if calendar is None:
            calendar = self.calendar(start, end)
            with self._lock:
                self._calendars[(start, end)] = calendar
        bootstrap = self.config.bootstrap_days(spec.processor)
        return {
            "expected_dates": calendar.expected_dates(start, end, bootstrap),
            "calendar_dates": calendar.expected_dates(start, end, 0),
            "range_days": (end - start).days + 1,
        }

    # -- reporting -------------------------------------------------------------------------------

    def _report(self, processor: str, run_id: int | None, runs: list[CheckRun]) -> None:
        lines = [_line(run) for run in runs]
        for run, line in zip(runs, lines, strict=True):
            self.store.add_event(
                "check_passed" if run.result.passed else "check_failed",
                line,
                run_id=run_id,
                processor=processor,
                data={"check": run.result.check_name, "severity": run.result.severity, "id": run.result.id},
            )
            self.announce(line)
        log_path = self._log_path(run_id)
        if log_path is not None:
            log = RunLog(log_path)
            try:
                for line in lines:
                    log.event(line)
            finally:
                log.close()

    def _log_path(self, run_id: int | None) -> Path | None:
        if run_id is None:
            return None
        run = self.store.get_run(run_id)
        return self.workspace.resolve(run.log_path) if run is not None and run.log_path else None


if TYPE_CHECKING:

    def _is_a_gatekeeper(runner: CheckRunner) -> Gatekeeper:
        return runner  # mypy proves that CheckRunner is what the controller expects


def _line(run: CheckRun) -> str:
    result = run.result
    verdict = "passed" if result.passed else "FAILED"
    detail = run.summary().removeprefix(f"{result.check_name}: ")
    return f"check {result.processor}.{result.check_name} ({result.severity}) {verdict}: {detail}"


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
