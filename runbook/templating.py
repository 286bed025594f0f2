"""Jinja templates inside runbook.yaml values (command lines, URLs, headers).

Variables available to a step: ``date``, ``start``, ``end`` (ISO dates), ``run_id``, ``attempt``,
``processor``. An undefined variable is an error, never an empty string.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment


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


def render(source: str, values: dict[str, Any]) -> str:
    """Render ``source`` with ``values``; raise ValueError when it uses an unknown variable."""
    if "{" not in source:
        return source
    try:
        return str(compile_template(source).render(**values))
    except TemplateError as exc:
        raise ValueError(f"{exc} in template {source!r}") from None
