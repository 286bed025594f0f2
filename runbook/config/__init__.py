"""runbook.yaml: read once, checked, and turned into frozen, typed objects.

Nothing else in runbook reads the YAML file. Every mistake becomes a :class:`ConfigError` whose
message names the file, the key path and the problem, e.g.
``runbook.yaml: processors.pgs.retries.attempts: expected an integer (got 'three')``.

Loading is cheap on purpose (named tuples, the C YAML parser, no Jinja): every command loads the
config, and an agent runs dozens of commands a session. What only matters to commands that run
steps (command and URL templates, their variables) is checked by
:func:`runbook.steps.templating.check_templates`, which the application calls before it plans or
runs anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runbook.config.model import (
    CalendarConfig,
    CheckConfig,
    HttpPoll,
    HttpStep,
    NotifyTarget,
    ProcessorConfig,
    ReadyTable,
    RetryPolicy,
    RunbookConfig,
    StateConfig,
    VersionCommand,
    WarehouseConfig,
    parse_duration,
)
from runbook.config.schema import Invalid, build
from runbook.errors import ConfigError

__all__ = [
    "CONFIG_FILENAME",
    "MAX_CONFIG_BYTES",
    "CalendarConfig",
    "CheckConfig",
    "HttpPoll",
    "HttpStep",
    "NotifyTarget",
    "ProcessorConfig",
    "ReadyTable",
    "RetryPolicy",
    "RunbookConfig",
    "StateConfig",
    "VersionCommand",
    "WarehouseConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]

CONFIG_FILENAME = "runbook.yaml"
# A runbook.yaml describes processors, not data: anything this large is a mistake (a data file
# passed as --config, say), refused before the YAML parser spends minutes on it.
MAX_CONFIG_BYTES = 2 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _where(path: tuple[Any, ...]) -> str | None:
    return ".".join(str(part) for part in path) or None


def parse_config(data: Any, file: str) -> RunbookConfig:
    """Check a mapping already read from YAML; raise ConfigError naming file and key path."""
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a mapping with a 'processors' key", file=file)
    try:
        config: RunbookConfig = build(RunbookConfig, data)
    except Invalid as exc:
        raise ConfigError(exc.message, file=file, path=_where(exc.path)) from None
    _check_graph(config, file)
    return config


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
    finished: set[str] = set()
    for name in config.processors:
        _visit(config, name, [], finished, file)


def _visit(config: RunbookConfig, node: str, visiting: list[str], finished: set[str], file: str) -> None:
    if node in finished:
        return
    if node in visiting:
        cycle = [*visiting[visiting.index(node) :], node]
        raise ConfigError(f"cycle in needs: {' -> '.join(cycle)}", file=file, path=f"processors.{node}.needs")
    visiting.append(node)
    for upstream in config.processors[node].needs:
        _visit(config, upstream, visiting, finished, file)
    visiting.pop()
    finished.add(node)


def load_config(path: Path) -> RunbookConfig:
    """Read and check runbook.yaml at ``path``."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"the file is {size:,} bytes; runbook.yaml may be at most {MAX_CONFIG_BYTES:,}", file=name
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=name) from None
    return parse_config(read_yaml(text, name), name)


def read_yaml(text: str, file: str) -> Any:
    """The YAML document in ``text``; a key given twice in one mapping is an error, not "the last wins"."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: YAML's own constructor reports it
                    continue
                if duplicate:
                    line = key_node.start_mark.line + 1
                    raise ConfigError(f"line {line}: key {key!r} is given twice", file=file)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_timestamp(self, node: Any) -> Any:
            # An impossible date (2024-02-30) stays text, so that the config check names its key.
            try:
                return super().construct_yaml_timestamp(node)
            except ValueError:
                return self.construct_scalar(node)

    Loader.add_constructor("tag:yaml.org,2002:timestamp", Loader.construct_yaml_timestamp)

    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}", file=file) from None
