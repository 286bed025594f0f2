"""runbook.yaml: parsed once into frozen, typed objects.

Nothing else in runbook reads the YAML file. Every mistake becomes a :class:`ConfigError` whose
message names the file, the key path and the problem, e.g.
``runbook.yaml: processors.pgs.retries: Input should be a valid integer (got 'three')``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from runbook.errors import ConfigError

CONFIG_FILENAME = "runbook.yaml"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def parse_duration(value: Any) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``; ``None`` stays ``None``."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Frozen):
    """How often a failed step is tried again, and how long to wait between tries."""

    attempts: int = Field(0, ge=0, le=100)
    delay: float = 5.0
    backoff: float = Field(2.0, ge=1.0)
    max_delay: float = 600.0

    _durations = field_validator("delay", "max_delay", mode="before")(parse_duration)

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` after ``attempt`` failed tries."""
        return min(self.delay * self.backoff ** max(attempt - 1, 0), self.max_delay)


class VersionCommand(_Frozen):
    command: str


class HttpStep(_Frozen):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json")
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])
    poll: HttpPoll | None = None


class HttpPoll(_Frozen):
    """For asynchronous endpoints: poll ``url`` until ``done_field`` equals ``done_value``."""

    url: str
    interval: float = 2.0
    done_field: str = "status"
    done_value: str = "done"
    failed_value: str = "failed"

    _durations = field_validator("interval", mode="before")(parse_duration)


class ReadyTable(_Frozen):
    """An upstream table that must have rows for date D before D runs."""

    table: str
    date_column: str = "game_date"


def _parseable_condition(text: str) -> str:
    from runbook.expectations import Expectation

    Expectation.parse(text)  # raises a ValueError naming the problem
    return text


class CheckConfig(_Frozen):
    name: str
    query: str
    expect: list[Annotated[str, AfterValidator(_parseable_condition)]] = Field(min_length=1)
    severity: Literal["block", "warn"] = "block"
    description: str = ""


class ProcessorConfig(_Frozen):
    phase: str = ""
    description: str = ""
    command: str | list[str] | None = None
    shell: bool = False
    python: str | None = None
    sql: str | None = None
    sql_file: str | None = None
    http: HttpStep | None = None
    needs: list[str] = Field(default_factory=list)
    depends_on_past: bool = False
    batch_days: int = Field(1, ge=1)
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: float | None = None
    workers: int | None = Field(None, ge=1)
    pool: str | None = None
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    version: str | VersionCommand | None = None
    bootstrap_days: int | None = Field(None, ge=0)
    ready: list[ReadyTable] = Field(default_factory=list)
    extent: str | None = None
    checks: list[CheckConfig] = Field(default_factory=list)

    _durations = field_validator("timeout", mode="before")(parse_duration)

    @field_validator("retries", mode="before")
    @classmethod
    def _retries_shorthand(cls, value: Any) -> Any:
        return {"attempts": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_step_kind(self) -> ProcessorConfig:
        kinds = [k for k in ("command", "python", "sql", "sql_file", "http") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"exactly one of command, python, sql, sql_file, http is required (found {found})"
            )
        if self.python is not None and ":" not in self.python:
            raise ValueError(f"python must be 'module:function' (got {self.python!r})")
        return self

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
        """A short hash of how the step runs: the default code version when none is declared."""
        payload = self.model_dump(include={"command", "shell", "python", "sql", "sql_file", "http"})
        return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


class CalendarConfig(_Frozen):
    start: dt.date | None = None
    end: dt.date | None = None
    off_days: list[dt.date] = Field(default_factory=list)
    off_weekdays: list[str] = Field(default_factory=list)
    seasons: list[dt.date] = Field(default_factory=list)
    bootstrap_days: int = Field(0, ge=0)
    query: str | None = None

    @field_validator("off_weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        bad = [day for day in value if day.lower()[:3] not in _WEEKDAYS]
        if bad:
            raise ValueError(f"unknown weekday {bad[0]!r} (use mon, tue, wed, thu, fri, sat, sun)")
        return [day.lower()[:3] for day in value]

    @property
    def off_weekday_numbers(self) -> frozenset[int]:
        return frozenset(_WEEKDAYS[day] for day in self.off_weekdays)

    @model_validator(mode="after")
    def _ordered(self) -> CalendarConfig:
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class WarehouseConfig(_Frozen):
    kind: Literal["duckdb", "bigquery"] = "duckdb"
    path: str = "state/warehouse.duckdb"
    project: str | None = None
    location: str | None = None
    maximum_bytes_billed: int | None = None
    api_endpoint: str | None = None
    credentials_env: str | None = None
    max_retries: int = Field(5, ge=0)

    @model_validator(mode="after")
    def _project_for_bigquery(self) -> WarehouseConfig:
        if self.kind == "bigquery" and not self.project:
            raise ValueError("kind bigquery needs project")
        return self


class StateConfig(_Frozen):
    database_url: str | None = None


class RunbookConfig(_Frozen):
    name: str = "runbook"
    state: StateConfig = Field(default_factory=StateConfig)
    workers: int = Field(2, ge=1, le=256)
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    pools: dict[str, int] = Field(default_factory=dict)
    processors: dict[str, ProcessorConfig] = Field(min_length=1)

    @field_validator("pools")
    @classmethod
    def _positive_pools(cls, value: dict[str, int]) -> dict[str, int]:
        for name, slots in value.items():
            if slots < 1:
                raise ValueError(f"pool {name!r} needs at least 1 slot (got {slots})")
        return value

    def order(self) -> list[str]:
        """Processor names in dependency order (upstreams first, then declaration order)."""
        done: list[str] = []
        pending = list(self.processors)
        while pending:
            for name in pending:
                if all(up in done for up in self.processors[name].needs):
                    done.append(name)
                    pending.remove(name)
                    break
        return done

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


HttpStep.model_rebuild()


def _check_graph(config: RunbookConfig, file: str) -> None:
    for name, proc in config.processors.items():
        if not _NAME.match(name):
            raise ConfigError(f"invalid processor name {name!r}", file=file, path=f"processors.{name}")
        for index, upstream in enumerate(proc.needs):
            if upstream not in config.processors:
                raise ConfigError(
                    f"unknown upstream processor {upstream!r}",
                    file=file,
                    path=f"processors.{name}.needs.{index}",
                )
        if proc.pool is not None and proc.pool not in config.pools:
            raise ConfigError(f"unknown pool {proc.pool!r}", file=file, path=f"processors.{name}.pool")
    visiting: list[str] = []
    finished: set[str] = set()

    def visit(node: str) -> None:
        if node in finished:
            return
        if node in visiting:
            cycle = visiting[visiting.index(node) :] + [node]
            raise ConfigError(
                f"cycle in needs: {' -> '.join(cycle)}", file=file, path=f"processors.{node}.needs"
            )
        visiting.append(node)
        for upstream in config.processors[node].needs:
            visit(upstream)
        visiting.pop()
        finished.add(node)

    for name in config.processors:
        visit(name)


def _check_templates(config: RunbookConfig, file: str) -> None:
    from runbook.templating import compile_template

    for name, proc in config.processors.items():
        parts = [proc.command] if isinstance(proc.command, str) else list(proc.command or [])
        if proc.http is not None:
            parts += [proc.http.url, *proc.http.headers.values()]
        for part in parts:
            try:
                compile_template(part)
            except ValueError as exc:
                raise ConfigError(
                    f"template error: {exc}", file=file, path=f"processors.{name}.command"
                ) from None


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-"))


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def parse_config(data: Any, file: str) -> RunbookConfig:
    """Validate a mapping already read from YAML; raise ConfigError naming file and key path."""
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a mapping with a 'processors' key", file=file)
    try:
        config = RunbookConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(part for part in error["loc"] if not isinstance(part, str) or "[" not in part)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] not in ("missing",) and not message.startswith("exactly one"):
            value = _lookup(data, tuple(error["loc"]))
            if value is not None and not isinstance(value, dict | list):
                message = f"{message} (got {value!r})"
        raise ConfigError(message, file=file, path=_location(loc) or None) from None
    _check_graph(config, file)
    _check_templates(config, file)
    return config


def load_config(path: Path) -> RunbookConfig:
    """Read and validate runbook.yaml at ``path``."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=name) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}", file=name) from None
    return parse_config(data, name)
