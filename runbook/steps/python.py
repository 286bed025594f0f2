"""Python steps: ``module:function`` called in the controller's process."""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runbook.errors import StepError
from runbook.steps import ERROR_TAIL_LINES, StepContext, StepResult


class PythonExecutor:
    """Calls ``module:function`` in-process with the step's values it accepts as keyword arguments.

    The function may also accept ``log`` (a callable taking one line). An int it returns is
    recorded as the rows affected; an exception fails the step with its traceback's tail.
    """

    def __init__(self, target: str, cwd: Path) -> None:
        self.target = target
        self.cwd = cwd
        self._function: Callable[..., Any] | None = None
        self._accepts: set[str] | None = None

    def function(self) -> Callable[..., Any]:
        if self._function is None:
            module_name, _, attr = self.target.partition(":")
            try:
                module = importlib.import_module(module_name)
                function = getattr(module, attr)
            except (ImportError, AttributeError) as exc:
                raise StepError(f"cannot load python step {self.target!r}: {exc}") from None
            params = inspect.signature(function).parameters.values()
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                self._accepts = {p.name for p in params}
            self._function = function
        return self._function

    def run(self, ctx: StepContext) -> StepResult:
        try:
            function = self.function()
        except StepError as exc:
            return StepResult(ok=False, error=str(exc))
        kwargs: dict[str, Any] = {**ctx.values, "log": lambda line: ctx.log.write(str(line), ctx.tag)}
        if self._accepts is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in self._accepts}
        try:
            value = function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of user code fails the step
            tail = traceback.format_exc().splitlines()[-ERROR_TAIL_LINES:]
            for line in tail:
                ctx.log.write(line, ctx.tag)
            return StepResult(ok=False, error="\n".join(tail) or repr(exc))
        rows = value if isinstance(value, int) and not isinstance(value, bool) else None
        return StepResult(ok=True, rows_affected=rows)
