"""Jinja templates inside runbook.yaml values (command lines, URLs, headers).

Variables available to a step: ``date``, ``start``, ``end`` (ISO dates), ``run_id``, ``attempt``,
``processor``. An undefined variable is an error, never an empty string; :func:`template_names`
lets the config check find one before anything runs.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from runbook.config import RunbookConfig
from runbook.errors import ConfigError

# The variables a step's templates may use.
STEP_VARIABLES = frozenset({"date", "start", "end", "run_id", "attempt", "processor"})


@functools.cache
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=512)
def compile_template(source: str) -> Any:
    """Parse ``source`` once; raise ValueError with Jinja's message when it is not a valid template."""
    try:
        return _environment().from_string(source)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None


def template_names(source: str) -> set[str]:
    """The variables ``source`` reads; ValueError when it is not a valid template."""
    if "{" not in source:
        return set()
    try:
        return set(meta.find_undeclared_variables(_environment().parse(source)))
    except TemplateError as exc:
        raise ValueError(str(exc)) from None


def render(source: str, values: dict[str, Any]) -> str:
    """Render ``source`` with ``values``; raise ValueError when it uses an unknown variable."""
    if "{" not in source:
        return source
    try:
        return str(compile_template(source).render(**values))
    except TemplateError as exc:
        raise ValueError(f"{exc} in template {source!r}") from None


def check_templates(config: RunbookConfig, file: str) -> None:
    """Check every step template (command, URL, headers): valid Jinja using only known variables.

    ``{{ undefined_name }}`` would otherwise fail every date at run time; here it is one line.
    """
    for name, proc in config.processors.items():
        parts: list[tuple[str, str]] = []
        if isinstance(proc.command, str):
            parts.append(("command", proc.command))
        elif proc.command is not None:
            parts += [(f"command.{index}", part) for index, part in enumerate(proc.command)]
        if proc.http is not None:
            parts.append(("http.url", proc.http.url))
            parts += [(f"http.headers.{key}", value) for key, value in proc.http.headers.items()]
            if proc.http.poll is not None:
                parts.append(("http.poll.url", proc.http.poll.url))
        for key, text in parts:
            where = f"processors.{name}.{key}"
            try:
                unknown = sorted(template_names(text) - STEP_VARIABLES)
            except ValueError as exc:
                raise ConfigError(f"template error: {exc}", file=file, path=where) from None
            if unknown:
                known = ", ".join(sorted(STEP_VARIABLES))
                raise ConfigError(
                    f"template uses unknown variable {unknown[0]!r} (known: {known})", file=file, path=where
                )
