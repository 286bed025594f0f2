"""The typed, frozen objects runbook.yaml becomes (see :mod:`runbook.config` for loading).

They are named tuples: immutable, typed, and about ten times cheaper to define than dataclasses,
which matters because every command loads the config. Field names are the YAML keys (``json`` of
an HTTP step is ``json_body`` here). Defaults are the documented ones (docs/config.md).
Constraints on single fields are registered with :func:`~runbook.config.schema.rules` at the end;
checks that span several fields are each class's ``check()``.
"""

import datetime as dt
import json
import re
from typing import Any, Literal, NamedTuple

from runbook.config.schema import Invalid, Rule, dump, rules
from runbook.kinds import NotifyEvent

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
STEP_KINDS = ("command", "python", "sql", "sql_file", "http")


def parse_duration(value: Any) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``; ``None`` stays ``None``."""
    if value is None or isinstance(value, bool):
        return None if value is None else _bad_duration(value)
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        _bad_duration(value)
    assert match is not None
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _bad_duration(value: Any) -> float:
    raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h)")


def _more_than_zero(value: Any, *, hint: str = "") -> float | None:
    """A duration that must be more than zero when given (``timeout: 0s`` is a mistake, not "none")."""
    seconds = parse_duration(value)
    if seconds is not None and seconds <= 0:
        raise ValueError(f"must be more than 0 seconds (got {value!r}){hint}")
    return seconds


def _positive_duration(value: Any) -> float | None:
    """A limit that leaving out removes."""
    return _more_than_zero(value, hint="; leave it out for no limit")


class RetryPolicy(NamedTuple):
    """How often a failed step is tried again, and how long to wait between tries.

    ``attempts`` counts the tries after the first one: ``attempts: 2`` runs a step at most three times.
    """

    attempts: int = 0
    delay: float = 5.0
    backoff: float = 2.0
    max_delay: float = 600.0

    @property
    def tries(self) -> int:
        """How many times a step runs at most: the first try plus ``attempts`` retries."""
        return self.attempts + 1

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` after ``attempt`` failed tries."""
        return min(self.delay * self.backoff ** max(attempt - 1, 0), self.max_delay)


def _retries(value: Any) -> Any:
    return {"attempts": value} if isinstance(value, int) and not isinstance(value, bool) else value


class VersionCommand(NamedTuple):
    command: str


class HttpPoll(NamedTuple):
    """For asynchronous endpoints: poll ``url`` until ``done_field`` equals ``done_value``."""

    url: str
    interval: float = 2.0
    done_field: str = "status"
    done_value: str = "done"
    failed_value: str = "failed"


class HttpStep(NamedTuple):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = {}
    json_body: Any = None
    expect_status: list[int] = [200, 201, 202, 204]
    poll: HttpPoll | None = None


class ReadyTable(NamedTuple):
    """An upstream table that must have rows for date D before D runs."""

    table: str
    date_column: str = "game_date"


_CHECK_TABLE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,2}$")
_CHECK_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_EXPECT = {
    "volume": ["rows >= 0.5 * median(rows, 14)"],
    "freshness": ["days_behind <= 0"],
}


class CheckConfig(NamedTuple):
    """A validation check (docs/checks.md): SQL and conditions, or a ready-made ``kind``."""

    name: str
    query: str | None = None
    expect: list[str] = []
    severity: Literal["block", "warn"] = "block"
    description: str = ""
    per_date: bool = False
    sample: str | None = None
    stable: list[str] = []
    tolerance: float = 0.0
    kind: Literal["sql", "volume", "freshness"] = "sql"
    table: str | None = None
    date_column: str = "game_date"

    def check(self) -> None:
        from runbook.expectations import Expectation, ExpressionError

        if self.kind == "sql":
            if self.query is None:
                raise Invalid(
                    "required key is missing (or use kind: volume / freshness with table:)", ("query",)
                )
            if self.table is not None:
                raise Invalid("table: goes with kind: volume or kind: freshness", ("table",))
            if not self.expect and not self.stable:
                raise Invalid("needs at least 1 entry (or stable: metrics)", ("expect",))
        else:
            if self.query is not None:
                raise Invalid(
                    f"kind: {self.kind} writes its own query: use table: and date_column:", ("query",)
                )
            if self.table is None:
                raise Invalid(
                    f"kind: {self.kind} needs table: (dataset.table or project.dataset.table)", ("table",)
                )
            if not _CHECK_TABLE.match(self.table.strip().strip("`")):
                raise Invalid(f"not a table name: {self.table!r} (use dataset.table or project.dataset.table)",
                              ("table",))  # fmt: skip
            if not _CHECK_COLUMN.match(self.date_column):
                raise Invalid(f"not a column name: {self.date_column!r}", ("date_column",))
            if self.kind == "freshness" and self.per_date:
                raise Invalid(
                    "kind: freshness looks at the newest date of the range: it is not per_date", ("per_date",)
                )
        for index, text in enumerate(self.expect):
            try:
                parsed = Expectation.parse(text)
            except ExpressionError as exc:
                raise Invalid(str(exc), ("expect", index)) from None
            if parsed.baselines and not self.is_per_date:
                call = sorted(parsed.baselines, key=lambda b: b.function)[0].function
                raise Invalid(
                    f"{text!r}: {call}() compares a date with earlier dates: it needs per_date: true",
                    ("expect", index),
                )
        for index, metric in enumerate(self.stable):
            if not _CHECK_COLUMN.match(metric):
                raise Invalid(f"not a metric name: {metric!r}", ("stable", index))
        if self.stable and not self.is_per_date:
            raise Invalid(
                "stable: compares each date before and after a rebuild: it needs per_date: true", ("stable",)
            )

    @property
    def is_per_date(self) -> bool:
        """Judged date by date: ``per_date: true``, and every ``kind: volume`` check."""
        return self.per_date or self.kind == "volume"

    @property
    def conditions(self) -> list[str]:
        """The ``expect:`` conditions, or a ready-made kind's default."""
        return self.expect or DEFAULT_EXPECT.get(self.kind, [])

    @property
    def sql(self) -> str:
        """The check's query: ``query:``, or the one a ready-made kind writes (BigQuery dialect)."""
        if self.query is not None:
            return self.query
        table, column = self.table.strip().strip("`") if self.table else "", self.date_column
        if self.kind == "volume":
            return (
                f"SELECT `{column}` AS date, COUNT(*) AS rows FROM `{table}`\n"
                f"WHERE `{column}` BETWEEN @start AND @end\nGROUP BY 1"
            )
        return f"SELECT MAX(`{column}`) AS newest_date, COUNT(*) AS rows FROM `{table}`\nWHERE `{column}` <= @end"


class ProcessorConfig(NamedTuple):
    phase: str = ""
    description: str = ""
    command: str | list[str] | None = None
    shell: bool = False
    python: str | None = None
    sql: str | None = None
    sql_file: str | None = None
    http: HttpStep | None = None
    needs: list[str] = []
    depends_on_past: bool = False
    batch_days: int = 1
    retries: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    workers: int | None = None
    pool: str | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    version: str | VersionCommand | None = None
    bootstrap_days: int | None = None
    ready: list[ReadyTable] = []
    extent: str | None = None
    checks: list[CheckConfig] = []
    check_batch_days: int = 7

    def check(self) -> None:
        kinds = [kind for kind in STEP_KINDS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"exactly one of {', '.join(STEP_KINDS)} is required (found {found})")
        if self.python is not None and ":" not in self.python:
            raise Invalid(f"python must be 'module:function' (got {self.python!r})", ("python",))
        if self.python is not None and self.timeout is not None:
            # Its function runs in a thread of the controller, which nothing can interrupt: a
            # timeout would let a retry start while the first attempt still runs.
            raise Invalid(
                "a python step cannot be timed out (it runs inside the controller): "
                "leave timeout out, or run it as a command (command: [python, -m, ...])",
                ("timeout",),
            )
        seen: set[str] = set()
        for index, check in enumerate(self.checks):
            if check.name in seen:
                raise Invalid(f"duplicate check name {check.name!r}", ("checks", index, "name"))
            seen.add(check.name)

    @property
    def step_kind(self) -> str:
        if self.command is not None:
            return "command"
        if self.python is not None:
            return "python"
        if self.http is not None:
            return "http"
        return "sql"

    def definition_hash(self) -> str:
        """A short hash of how the step runs: the default code version when none is declared.

        Stable across runbook releases: a change would make every built date stale.
        """
        import hashlib

        payload = {kind: dump(getattr(self, kind)) for kind in ("command", "shell", *STEP_KINDS[1:])}
        return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _weekdays(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    bad = [day for day in value if not isinstance(day, str) or day.lower()[:3] not in WEEKDAYS]
    if bad:
        raise ValueError(f"unknown weekday {bad[0]!r} (use mon, tue, wed, thu, fri, sat, sun)")
    return [day.lower()[:3] for day in value]


class CalendarConfig(NamedTuple):
    start: dt.date | None = None
    end: dt.date | None = None
    off_days: list[dt.date] = []
    off_weekdays: list[str] = []
    seasons: list[dt.date] = []
    bootstrap_days: int = 0
    query: str | None = None

    @property
    def off_weekday_numbers(self) -> frozenset[int]:
        return frozenset(WEEKDAYS[day] for day in self.off_weekdays)

    def check(self) -> None:
        if self.start and self.end and self.end < self.start:
            raise Invalid(f"end {self.end} is before start {self.start}", ("end",))


class WarehouseConfig(NamedTuple):
    kind: Literal["duckdb", "bigquery"] = "duckdb"
    path: str = "state/warehouse.duckdb"
    project: str | None = None
    location: str | None = None
    maximum_bytes_billed: int | None = None
    api_endpoint: str | None = None
    credentials_env: str | None = None
    max_retries: int = 5
    # BigQuery: rate limits and 5xx are retried until this many seconds have passed.
    retry_deadline: float = 600.0
    # BigQuery: job ids start with this (default: the runbook's name).
    job_prefix: str | None = None
    # BigQuery on-demand price, for `runbook plan --estimate` and reports.
    price_per_tib: float = 6.25

    def check(self) -> None:
        if self.kind == "bigquery" and not self.project:
            raise ValueError("kind bigquery needs project")
        if self.job_prefix is not None and not _JOB_PREFIX.match(self.job_prefix):
            raise Invalid(
                f"job_prefix must be 1-64 letters, digits, _ or - (got {self.job_prefix!r})", ("job_prefix",)
            )


_JOB_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
NOTIFY_EVENTS = [event.value for event in NotifyEvent]


def _notify_events(value: Any) -> Any:
    if isinstance(value, list):
        for entry in value:
            if entry not in NOTIFY_EVENTS:
                raise ValueError(f"unknown event {entry!r} (use {', '.join(NOTIFY_EVENTS)})")
    return value


def _notify_entries(value: Any) -> Any:
    """YAML 1.1 reads a bare ``on:`` key as the boolean true: give it back its name."""
    if not isinstance(value, list):
        return value
    return [
        {("on" if key is True else key): item for key, item in entry.items()}
        if isinstance(entry, dict)
        else entry
        for entry in value
    ]


class NotifyTarget(NamedTuple):
    """A webhook that hears about runs: finished, failed, blocked, interrupted, stalled, throttled."""

    url: str
    on: list[str] = NOTIFY_EVENTS
    format: Literal["json", "slack"] = "json"
    stalled_after: float = 1800.0
    retries: RetryPolicy = RetryPolicy(attempts=3, delay=2.0)
    timeout: float = 10.0

    def check(self) -> None:
        if not _ENV_REF.search(self.url):
            raise Invalid(
                "a webhook URL is a secret: take it from the environment, e.g. url: ${SLACK_WEBHOOK_URL}",
                ("url",),
            )


class StateConfig(NamedTuple):
    database_url: str | None = None


class RunbookConfig(NamedTuple):
    processors: dict[str, ProcessorConfig]
    name: str = "runbook"
    state: StateConfig = StateConfig()
    workers: int = 2
    warehouse: WarehouseConfig = WarehouseConfig()
    calendar: CalendarConfig = CalendarConfig()
    pools: dict[str, int] = {}
    notify: list[NotifyTarget] = []

    def check(self) -> None:
        for name, slots in self.pools.items():
            if slots < 1:
                raise Invalid(f"pool {name!r} needs at least 1 slot (got {slots})", ("pools", name))

    def order(self) -> list[str]:
        """Processor names in dependency order (upstreams first, then declaration order)."""
        done: dict[str, None] = {}
        pending = list(self.processors)
        while pending:
            for name in pending:
                if all(up in done for up in self.processors[name].needs):
                    done[name] = None
                    pending.remove(name)
                    break
        return list(done)

    def downstream_of(self, name: str) -> set[str]:
        """Every processor that needs ``name`` directly or through others."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for other, proc in self.processors.items():
                if current in proc.needs and other not in found:
                    found.add(other)
                    frontier.append(other)
        return found

    def bootstrap_days(self, name: str) -> int:
        own = self.processors[name].bootstrap_days
        return self.calendar.bootstrap_days if own is None else own


# Constraints on single fields: bounds, converters (durations, shorthands), YAML names.
rules(
    RetryPolicy,
    attempts=Rule(ge=0, le=100),
    delay=Rule(before=parse_duration),
    backoff=Rule(ge=1.0),
    max_delay=Rule(before=parse_duration),
)
rules(HttpPoll, interval=Rule(before=parse_duration))
rules(HttpStep, json_body=Rule(alias="json"))
rules(CheckConfig, tolerance=Rule(ge=0))
rules(
    ProcessorConfig,
    batch_days=Rule(ge=1),
    retries=Rule(before=_retries),
    timeout=Rule(before=_positive_duration),
    workers=Rule(ge=1),
    bootstrap_days=Rule(ge=0),
    check_batch_days=Rule(ge=1, le=366),
)
rules(CalendarConfig, off_weekdays=Rule(before=_weekdays), bootstrap_days=Rule(ge=0))
rules(
    WarehouseConfig,
    max_retries=Rule(ge=0),
    retry_deadline=Rule(before=_more_than_zero),
    price_per_tib=Rule(ge=0.0),
)
rules(
    NotifyTarget,
    on=Rule(before=_notify_events),
    stalled_after=Rule(before=_more_than_zero),
    retries=Rule(before=_retries),
    timeout=Rule(before=_more_than_zero),
)
rules(
    RunbookConfig,
    processors=Rule(min_items=1),
    workers=Rule(ge=1, le=256),
    notify=Rule(before=_notify_entries),
)
