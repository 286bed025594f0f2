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

A ``per_date`` check (and ``kind: volume``) returns one row per date and is judged date by date
(:mod:`runbook.checks.per_date`); in a run it is judged window by window as dates are built
(:meth:`CheckRunner.run_date_checks`), and a failing date blocks the downstream of that date only.
A ``sample:`` query keeps up to :data:`SAMPLE_ROWS` offending rows of a failure, redacted.
``kind: freshness`` compares the newest date of a table with the calendar.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.checks.per_date import DateVerdict, History, as_date, failed_ranges, judge_date, ranges_summary
from runbook.clock import utcnow
from runbook.config import CheckConfig
from runbook.engine.calendar import Calendar
from runbook.errors import ConfigError, UsageError
from runbook.expectations import CALENDAR_NAMES, Condition, Expectation, ExpressionError
from runbook.kinds import Severity
from runbook.redact import Redactor, redact_tree
from runbook.runlog import RunLog
from runbook.state.records import CheckResult
from runbook.state.store import Store
from runbook.warehouse import Warehouse
from runbook.workspace import Workspace

if TYPE_CHECKING:
    from runbook.engine.seams import Gatekeeper

BLOCK = Severity.BLOCK
SAMPLE_ROWS = 5  # rows kept of a sample query, per failed date
SAMPLE_DATES = 5  # failed dates of a per-date check that get sample rows
SAMPLE_VALUE_CHARS = 120  # a longer value is cut


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

    @property
    def per_date(self) -> bool:
        return self.config.is_per_date


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
            for number, text in enumerate(check.conditions):
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
    verdicts: list[DateVerdict] = field(default_factory=list)  # per date: each date judged
    failed_dates: dict[str, str] = field(default_factory=dict)  # per date: date -> what failed

    @property
    def blocking_failure(self) -> bool:
        return not self.result.passed and self.result.severity == BLOCK

    def summary(self) -> str:
        """``usage_rate_coverage: pct_populated >= 45 (42.9 >= 45)`` for what made it fail; for a
        per-date check the failed dates as ranges with their values."""
        name = self.result.check_name
        if self.result.error:
            return f"{name}: {self.result.error}"
        if self.result.per_date:
            if self.result.failed_dates:
                return f"{name}: {ranges_summary(self.result.failed_dates, len(self.verdicts))}"
            judged = len(self.verdicts) or self.result.metrics.get("dates", 0)
            return f"{name}: passed on all {judged} date(s)"
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
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.workspace = workspace
        self.config = workspace.config
        self.store = store
        self.warehouse = warehouse
        self.calendar = calendar
        self.announce = announce or (lambda line: None)
        self.redact = redact or Redactor(workspace.secret_values())
        self.specs = compile_checks(workspace)
        self._calendars: dict[tuple[dt.date, dt.date], Calendar] = {}
        self._lock = threading.Lock()

    def has_checks(self, processor: str) -> bool:
        return bool(self.specs.get(processor))

    def blocking(self, processor: str) -> bool:
        """Whether the downstream must wait for this processor's checks: it has a ``block`` check."""
        return any(spec.severity == BLOCK for spec in self.specs.get(processor, []))

    def run_checks(self, processor: str, run_id: int | None, start: dt.date, end: dt.date) -> list[str]:
        """Run ``processor``'s range-wide checks over [start, end]; messages of the failed ``block`` ones."""
        runs = self.evaluate(processor, run_id, start, end, scope="range")
        return [run.summary() for run in runs if run.blocking_failure]

    def run_date_checks(
        self,
        processor: str,
        run_id: int | None,
        start: dt.date,
        end: dt.date,
        dates: Collection[dt.date] | None = None,
    ) -> dict[str, str]:
        """Run ``processor``'s per-date checks over [start, end] (only ``dates`` are judged when
        given); the dates a ``block`` check failed on, each with what failed."""
        failed: dict[str, str] = {}
        for run in self.evaluate(processor, run_id, start, end, scope="per_date", dates=dates):
            if run.result.severity != BLOCK:
                continue
            for day, message in run.failed_dates.items():
                failed.setdefault(day, f"{run.result.check_name} on {day}: {message}")
        return failed

    def evaluate(
        self,
        processor: str,
        run_id: int | None,
        start: dt.date,
        end: dt.date,
        *,
        scope: str = "all",
        dates: Collection[dt.date] | None = None,
    ) -> list[CheckRun]:
        """Run, store, log and announce each check of ``processor`` (``scope``: ``all``, ``range``
        for the range-wide ones, ``per_date``); return the outcomes."""
        runs = []
        for spec in self.specs.get(processor, []):
            if scope == "range" and spec.per_date or scope == "per_date" and not spec.per_date:
                continue
            if spec.per_date:
                runs.append(self._run_per_date(spec, run_id, start, end, dates))
            else:
                runs.append(self._run_one(spec, run_id, start, end))
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
            rows = warehouse.query(spec.config.sql, params)
            if len(rows) != 1:
                raise ValueError(f"the check query returned {len(rows)} rows; it must return exactly one")
            metrics = dict(rows[0])
            if spec.config.kind == "freshness":
                metrics.update(self._freshness(spec, metrics, start, end))
            config_error = self._unknown_names(spec, metrics)
            if config_error is None:
                values = {**self._calendar_values(spec, start, end), **metrics}
                conditions = [expectation.evaluate(values) for expectation in spec.expectations]
        except Exception as exc:  # noqa: BLE001 - a query that fails is a failed check, recorded
            error = " ".join(str(exc).split()) or type(exc).__name__
        if config_error is not None:
            error = config_error.message
        passed = error is None and all(condition.passed for condition in conditions)
        samples = None
        if not passed and error is None and spec.config.sample:
            samples = self._samples(spec, [(None, params)])
        result = self.store.add_check_result(
            run_id=run_id,
            processor=spec.processor,
            check_name=spec.name,
            severity=spec.severity,
            passed=passed,
            start_date=start.isoformat(),
            end_date=end.isoformat(),
            metrics={key: _json_value(value) for key, value in metrics.items()},
            conditions=[condition.as_dict() for condition in conditions],
            query=spec.config.sql,
            params={key: value.isoformat() for key, value in params.items()},
            error=error,
            at=utcnow(),
            samples=samples,
        )
        return CheckRun(result, conditions, config_error)

    def _run_per_date(
        self,
        spec: CheckSpec,
        run_id: int | None,
        start: dt.date,
        end: dt.date,
        dates: Collection[dt.date] | None,
    ) -> CheckRun:
        """Judge each date of [start, end] on its own (see :mod:`runbook.checks.per_date`)."""
        params = {"start": start, "end": end}
        by_date: dict[dt.date, dict[str, Any]] = {}
        error: str | None = None
        config_error: ConfigError | None = None
        warehouse = self.warehouse()
        try:
            by_date = _by_date(warehouse.query(spec.config.sql, params))
            if by_date:
                names = {key for row in by_date.values() for key in row}
                config_error = self._unknown_names(spec, dict.fromkeys(names))
        except Exception as exc:  # noqa: BLE001 - a query that fails is a failed check, recorded
            error = " ".join(str(exc).split()) or type(exc).__name__
        if config_error is not None:
            error = config_error.message
        calendar = self._calendar(start, end)
        expected = {
            d for d, why in calendar.dates(start, end, self.config.bootstrap_days(spec.processor)) if not why
        }
        planned = {d for d, why in calendar.dates(start, end, 0) if not why}
        judged = sorted(expected | {d for d in by_date if start <= d <= end})
        if dates is not None:
            allowed = set(dates)
            judged = [d for d in judged if d in allowed]
        if error is not None:
            verdicts = [DateVerdict(day, {}, error=error) for day in judged]
        else:
            stable = spec.config.stable
            previous = (
                self.store.check_dates_before_builds(
                    spec.processor, spec.name, [d.isoformat() for d in judged]
                )
                if stable
                else {}
            )
            history = self._history(spec, judged, by_date, start)
            verdicts = []
            for day in judged:
                values = {
                    "expected_dates": int(day in expected),
                    "calendar_dates": int(day in planned),
                    "range_days": 1,
                }
                before = previous.get(day.isoformat())
                verdicts.append(
                    judge_date(day, by_date.get(day), spec.expectations, values, history, stable,
                               spec.config.tolerance, before.metrics if before is not None else None)
                )  # fmt: skip
        failing = [v for v in verdicts if not v.passed]
        samples = None
        if failing and error is None and spec.config.sample:
            samples = self._samples(
                spec,
                [
                    (v.date, {"date": v.date, "start": v.date, "end": v.date})
                    for v in failing
                    if v.error is None
                ][:SAMPLE_DATES],
            )
        ranges = failed_ranges(verdicts)
        changed = [{"date": v.date.isoformat(), **change} for v in verdicts for change in v.changes]
        result = self.store.add_check_result(
            dates=[
                {
                    "date": v.date.isoformat(),
                    "passed": v.passed,
                    "error": v.error,
                    "metrics": {key: _json_value(value) for key, value in v.metrics.items()},
                    "conditions": v.stored_conditions(),
                }
                for v in (verdicts if error is None else [])
            ],  # fmt: skip
            run_id=run_id,
            processor=spec.processor,
            check_name=spec.name,
            severity=spec.severity,
            passed=not failing,
            start_date=start.isoformat(),
            end_date=end.isoformat(),
            metrics={
                "dates": len(verdicts),
                "passed_dates": len(verdicts) - len(failing),
                "failed_dates": len(failing),
            },
            conditions=[
                {
                    "expr": e.text,
                    "left": None,
                    "op": None,
                    "right": None,
                    "passed": all(v.conditions[i].passed for v in verdicts if len(v.conditions) > i)
                    and error is None,
                    "failed_dates": sum(
                        1 for v in verdicts if len(v.conditions) > i and not v.conditions[i].passed
                    ),
                }
                for i, e in enumerate(spec.expectations)
            ],  # fmt: skip
            query=spec.config.sql,
            params={key: value.isoformat() for key, value in params.items()},
            error=error,
            at=utcnow(),
            per_date=True,
            failed_dates=ranges,
            samples=samples,
            changed_dates=changed or None,
        )
        failed = {v.date.isoformat(): v.explain() for v in failing}
        return CheckRun(result, [], config_error, verdicts=verdicts, failed_dates=failed)

    def _history(
        self,
        spec: CheckSpec,
        judged: Sequence[dt.date],
        by_date: Mapping[dt.date, Mapping[str, Any]],
        start: dt.date,
    ) -> History:
        """Earlier values for the baselines of ``spec``: the query's rows, then what is stored."""
        wanted = {b for e in spec.expectations for b in e.baselines}
        if not wanted or not judged:
            return History(by_date)
        count = max(b.dates for b in wanted)
        before: list[tuple[dt.date, Mapping[str, Any]]] = []
        if count:
            stored = self.store.check_dates_before(
                spec.processor, spec.name, start.isoformat(), 2 * count + 7
            )
            before = [(dt.date.fromisoformat(row.date), row.metrics) for row in stored]
        at: dict[dt.date, Mapping[str, Any]] = {}
        if any(b.function == "last_week" for b in wanted):
            weeks = [
                (d - dt.timedelta(days=7)).isoformat()
                for d in judged
                if d - dt.timedelta(days=7) not in by_date
            ]
            found = self.store.check_dates_latest(spec.processor, spec.name, weeks) if weeks else {}
            at = {dt.date.fromisoformat(day): row.metrics for day, row in found.items()}
        return History(by_date, before, at)

    def _samples(
        self, spec: CheckSpec, targets: Sequence[tuple[dt.date | None, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Up to SAMPLE_ROWS rows of the ``sample:`` query per target (a failed date, or the
        range), values redacted and cut."""
        assert spec.config.sample is not None
        found = []
        for day, params in targets:
            entry: dict[str, Any] = {
                "date": day.isoformat() if day else None,
                "rows": [],
                "more": False,
                "error": None,
            }
            try:
                rows = self.warehouse().query(spec.config.sample, params)
                entry["rows"] = [_sample_row(row, self.redact) for row in rows[:SAMPLE_ROWS]]
                entry["more"] = len(rows) > SAMPLE_ROWS
            except Exception as exc:  # noqa: BLE001 - a failing sample query is shown, not raised
                entry["error"] = self.redact(" ".join(str(exc).split()) or type(exc).__name__)
            found.append(entry)
        return found

    def _freshness(
        self, spec: CheckSpec, metrics: Mapping[str, Any], start: dt.date, end: dt.date
    ) -> dict[str, Any]:
        """``kind: freshness``: the newest date the calendar expects by ``end`` and how many
        expected dates come after the newest date present."""
        calendar = self._calendar(start, end)
        bootstrap = self.config.bootstrap_days(spec.processor)
        expected = [d for d, why in calendar.dates(start, end, bootstrap) if not why]
        newest = as_date(metrics.get("newest_date"))
        return {
            "expected_newest": expected[-1].isoformat() if expected else None,
            "days_behind": sum(1 for d in expected if newest is None or d > newest),
        }

    def _calendar(self, start: dt.date, end: dt.date) -> Calendar:
        with self._lock:
            calendar = self._calendars.get((start, end))
        if calendar is None:
            calendar = self.calendar(start, end)
            with self._lock:
                self._calendars[(start, end)] = calendar
        return calendar

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
        calendar = self._calendar(start, end)
        bootstrap = self.config.bootstrap_days(spec.processor)
        return {
            "expected_dates": calendar.expected_dates(start, end, bootstrap),
            "calendar_dates": calendar.expected_dates(start, end, 0),
            "range_days": (end - start).days + 1,
        }

    # -- reporting -------------------------------------------------------------------------------

    def _report(self, processor: str, run_id: int | None, runs: list[CheckRun]) -> None:
        lines = [_line(run) for run in runs]
        passed_windows: dict[tuple[str, str], list[CheckRun]] = {}
        for run, line in zip(runs, lines, strict=True):
            if not run.result.passed:
                kind = "check_failed"
            else:  # a per-date check passes window after window: the handoff's timeline leaves those out
                kind = "check_window_passed" if run.result.per_date else "check_passed"
            self.store.add_event(
                kind,
                line,
                run_id=run_id,
                processor=processor,
                data={"check": run.result.check_name, "severity": run.result.severity, "id": run.result.id},
            )
            if run.result.per_date and run.result.passed:
                # A window of dates that passed every per-date check is one line on the terminal
                # (the log and the events keep one per check).
                window = (str(run.result.start_date), str(run.result.end_date))
                passed_windows.setdefault(window, []).append(run)
            else:
                self.announce(line)
        for (start, end), passed in passed_windows.items():
            span = start if start == end else f"{start}..{end}"
            blocking = any(run.result.severity == Severity.BLOCK for run in passed)
            released = ", downstream released" if blocking else ""
            self.announce(f"{processor} {span}: {len(passed)} per-date check(s) passed{released}")
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
    if result.per_date:
        span = (
            result.start_date
            if result.start_date == result.end_date
            else f"{result.start_date}..{result.end_date}"
        )
        detail = f"{span}: {detail}"
    return f"check {result.processor}.{result.check_name} ({result.severity}) {verdict}: {detail}"


def _by_date(rows: Sequence[Mapping[str, Any]]) -> dict[dt.date, dict[str, Any]]:
    """A per-date query's rows by their ``date`` column; a missing column or a date twice is an error."""
    found: dict[dt.date, dict[str, Any]] = {}
    for row in rows:
        if "date" not in row:
            columns = ", ".join(row) or "none"
            raise ValueError(f"a per_date check's query must return a `date` column (it returned: {columns})")
        day = as_date(row["date"])
        if day is None:
            raise ValueError(f"the date column holds {row['date']!r}, which is not a date")
        if day in found:
            raise ValueError(f"the query returned more than one row for {day}; it must return one per date")
        found[day] = {
            key: float(value) if isinstance(value, Decimal) else value for key, value in row.items()
        }
    return found


def _sample_row(row: Mapping[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    """A sample row as stored: JSON values, secrets masked, long values cut."""
    found: dict[str, Any] = {}
    for key, value in row.items():
        value = redact_tree(_json_value(value), redact)
        if isinstance(value, str) and len(value) > SAMPLE_VALUE_CHARS:
            value = value[: SAMPLE_VALUE_CHARS - 1] + "…"
        found[str(key)] = value
    return found


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
