"""The ``expect:`` conditions of checks: a tiny, safe expression language evaluated without ``eval``.

A condition is parsed with Python's :mod:`ast` and only these nodes are accepted: names, numbers,
``+ - * /`` (and a leading ``-``), parentheses, the comparisons ``>= > <= < == !=`` (chains such
as ``0 <= x <= 100`` too), and ``and`` / ``or`` / ``not``. Anything else (calls, attributes,
strings, subscripts, ``**``) is refused when the config is loaded, so a condition can never run
code. Names are the check query's metrics and the calendar values runbook supplies
(:data:`CALENDAR_NAMES`). Three calls are allowed, the baselines of per-date checks:
``median(metric, N)``, ``quantile(metric, q, N)`` and ``last_week(metric)``; their arguments are
checked at load time (a metric name, N a whole number of dates, q from 0 to 1) and their values are
computed by the caller from the metric's earlier values (:class:`Baseline`). A baseline with no
earlier value is :data:`NO_HISTORY`: a comparison with it is not judged (it passes, and says so).

Evaluating never raises on data: a NULL metric, a division by zero or values that cannot be
compared make the condition fail, and the recorded values show why.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CALENDAR_NAMES = ("expected_dates", "calendar_dates", "range_days")

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], bool]]] = {
    ast.GtE: (">=", operator.ge),
    ast.Gt: (">", operator.gt),
    ast.LtE: ("<=", operator.le),
    ast.Lt: ("<", operator.lt),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_WORDS: dict[type[ast.cmpop], str] = {ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_ALLOWED = (
    "names, numbers, + - * /, parentheses, >= > <= < == !=, and, or, not, "
    "median(m, N), quantile(m, q, N), last_week(m)"
)
BASELINE_FUNCTIONS = ("median", "quantile", "last_week")
MAX_BASELINE_DATES = 366


class ExpressionError(ValueError):
    """A condition that is not valid: the message says what is wrong with it."""


@dataclass(frozen=True)
class Baseline:
    """A call of a baseline function: ``median(rows, 14)``, ``quantile(rows, 0.1, 28)``,
    ``last_week(rows)``, the metric it reads and how many earlier dates with a value it looks at."""

    function: str
    metric: str
    dates: int = 0
    q: float = 0.5

    def compute(self, history: Sequence[Any]) -> Any:
        """The baseline from the metric's earlier values, newest first (``last_week``: the value
        of the same weekday a week before, or nothing); :data:`NO_HISTORY` when there are none."""
        if self.function == "last_week":
            value = history[0] if history else None
            return value if _number(value) else NO_HISTORY
        numbers = sorted(float(v) for v in history[: self.dates] if _number(v))
        if not numbers:
            return NO_HISTORY
        return _quantile(numbers, 0.5 if self.function == "median" else self.q)


class _NoHistory:
    """A baseline with no earlier value to compute it from: comparisons with it are not judged
    (they pass, and the stored condition says ``no history``)."""

    _instance: _NoHistory | None = None

    def __new__(cls) -> _NoHistory:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_HISTORY"


NO_HISTORY = _NoHistory()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted ``values`` with linear interpolation (numpy's default)."""
    position = (len(values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@dataclass
class Condition:
    """The outcome of one condition: its text, the two sides' values, and whether it held.

    For a plain comparison ``left`` and ``right`` are the values of its two sides (the metric and
    the threshold). A compound condition (``and``, ``or``, ``not``, a chained comparison) records
    the outcome of each comparison in ``parts`` and leaves ``left``/``right`` empty.
    """

    expr: str
    passed: bool
    left: Any = None
    op: str | None = None
    right: Any = None
    parts: list[Condition] = field(default_factory=list)
    no_history: bool = False  # a baseline side had no earlier value: not judged (passed)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expr": self.expr,
            "left": _json_number(None if self.left is NO_HISTORY else self.left),
            "op": self.op,
            "right": _json_number(None if self.right is NO_HISTORY else self.right),
            "passed": self.passed,
        }
        if self.parts:
            data["parts"] = [part.as_dict() for part in self.parts]
        if self.no_history:
            data["no_history"] = True
        return data

    def explain(self) -> str:
        """``pct_populated >= 45 (42.9 >= 45)``, or the parts of a compound condition."""
        return explain(self.as_dict())


@dataclass(frozen=True)
class Expectation:
    """A parsed condition; :meth:`evaluate` it against metric and calendar values."""

    text: str
    tree: ast.expr
    names: frozenset[str]
    baselines: frozenset[Baseline] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Expectation:
        """Parse and vet ``text``; raise :class:`ExpressionError` for anything outside the grammar."""
        source = text.strip()
        if not source:
            raise ExpressionError("empty condition")
        try:
            tree = ast.parse(source, mode="eval").body
        except SyntaxError as exc:
            raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
        names: set[str] = set()
        baselines: set[Baseline] = set()
        _vet_condition(tree, text, names, baselines)
        return cls(source, tree, frozenset(names), frozenset(baselines))

    def evaluate(
        self, values: Mapping[str, Any], baselines: Mapping[Baseline, Any] | None = None
    ) -> Condition:
        """The outcome of the condition with ``values`` for its names (all must be present) and
        ``baselines`` for its baseline calls (missing ones have no history)."""
        return _condition(self.tree, self.text, _Scope(values, baselines or {}))


@dataclass(frozen=True)
class _Scope:
    values: Mapping[str, Any]
    baselines: Mapping[Baseline, Any]


def show(value: Any) -> str:
    """A value as messages print it: ``47.9``, ``62.04`` (not ``62.040000000000006``), ``NULL``."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def explain(condition: dict[str, Any]) -> str:
    """A stored condition (:meth:`Condition.as_dict`) as one line: its text and its values."""
    if condition.get("op") is not None:
        if condition.get("no_history"):
            return f"{condition['expr']} (no history yet: not judged)"
        values = f"{show(condition['left'])} {condition['op']} {show(condition['right'])}"
        return f"{condition['expr']} ({values})"
    parts = "; ".join(explain(part) for part in condition.get("parts", []))
    return f"{condition['expr']} ({parts})" if parts else str(condition["expr"])


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _vet_condition(node: ast.expr, text: str, names: set[str], baselines: set[Baseline]) -> None:
    """A condition: a comparison of values, or conditions joined by and / or / not."""
    if isinstance(node, ast.Compare):
        bad = [op for op in node.ops if type(op) not in _COMPARE]
        if bad:
            word = _WORDS.get(type(bad[0]), type(bad[0]).__name__)
            raise ExpressionError(f"{text!r}: {word!r} is not allowed (allowed: {_ALLOWED})")
        for operand in (node.left, *node.comparators):
            _vet_value(operand, text, names, baselines)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _vet_condition(value, text, names, baselines)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _vet_condition(node.operand, text, names, baselines)
    elif isinstance(node, ast.Name | ast.Constant | ast.BinOp | ast.UnaryOp | ast.Call):
        part = _segment(text, node)
        raise ExpressionError(f"{text!r}: {part!r} is not a condition: compare it, e.g. 'duplicates == 0'")
    else:
        _refuse(node, text)


def _vet_value(node: ast.expr, text: str, names: set[str], baselines: set[Baseline]) -> None:
    """A value: a name, a number, a baseline call, or arithmetic on values."""
    if isinstance(node, ast.Call):
        baseline = baseline_of(node, text)
        names.add(baseline.metric)
        baselines.add(baseline)
    elif isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"{text!r}: only numbers may be written as values (got {node.value!r})")
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        _vet_value(node.left, text, names, baselines)
        _vet_value(node.right, text, names, baselines)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _vet_value(node.operand, text, names, baselines)
    else:
        _refuse(node, text)


_SIGNATURES = {
    "median": "median(metric, N)",
    "quantile": "quantile(metric, q, N)",
    "last_week": "last_week(metric)",
}


def baseline_of(node: ast.Call, text: str) -> Baseline:
    """The baseline a call names, or ExpressionError saying what is wrong with the call."""
    call = _segment(text, node)
    if not isinstance(node.func, ast.Name):
        _refuse(node, text)
    assert isinstance(node.func, ast.Name)
    function = node.func.id
    if function not in _SIGNATURES:
        known = ", ".join(_SIGNATURES.values())
        raise ExpressionError(
            f"{text!r}: {call!r} is not allowed: unknown function {function!r} (known: {known})"
        )
    signature = _SIGNATURES[function]
    arity = signature.count(",") + 1
    if node.keywords or len(node.args) != arity:
        raise ExpressionError(f"{text!r}: {call!r}: {function} takes {arity} argument(s): {signature}")
    metric = node.args[0]
    if not isinstance(metric, ast.Name):
        raise ExpressionError(f"{text!r}: {call!r}: the first argument of {signature} must be a metric name")
    if function == "last_week":
        return Baseline(function, metric.id)
    count = node.args[-1]
    if not (
        isinstance(count, ast.Constant)
        and isinstance(count.value, int)
        and not isinstance(count.value, bool)
        and 1 <= count.value <= MAX_BASELINE_DATES
    ):
        got = _segment(text, count)
        raise ExpressionError(
            f"{text!r}: {call!r}: N in {signature} must be a whole number of dates from 1 to "
            f"{MAX_BASELINE_DATES} (got {got!r})"
        )
    q = 0.5
    if function == "quantile":
        given = node.args[1]
        if not (
            isinstance(given, ast.Constant)
            and isinstance(given.value, int | float)
            and not isinstance(given.value, bool)
            and 0 <= given.value <= 1
        ):
            got = _segment(text, given)
            raise ExpressionError(
                f"{text!r}: {call!r}: q in {signature} must be a number from 0 to 1 (got {got!r})"
            )
        q = float(given.value)
    return Baseline(function, metric.id, count.value, q)


def _refuse(node: ast.AST, text: str) -> None:
    raise ExpressionError(f"{text!r}: {_segment(text, node)!r} is not allowed (allowed: {_ALLOWED})")


def _segment(text: str, node: ast.AST) -> str:
    return ast.get_source_segment(text.strip(), node) or ast.unparse(node)


def _condition(node: ast.expr, text: str, values: _Scope) -> Condition:
    expr = _segment(text, node)
    if isinstance(node, ast.Compare):
        operands = [_value(node.left, values), *(_value(c, values) for c in node.comparators)]
        pairs = [_compare(operands[i], op, operands[i + 1], node, i, text) for i, op in enumerate(node.ops)]
        if len(pairs) == 1:
            return pairs[0]
        return Condition(expr, all(p.passed for p in pairs), parts=pairs)
    if isinstance(node, ast.BoolOp):
        parts = [_condition(value, text, values) for value in node.values]
        combine = all if isinstance(node.op, ast.And) else any
        return Condition(expr, combine(p.passed for p in parts), parts=parts)
    assert isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    inner = _condition(node.operand, text, values)
    return Condition(expr, not inner.passed, parts=[inner])


def _compare(left: Any, op: ast.cmpop, right: Any, node: ast.Compare, index: int, text: str) -> Condition:
    symbol, function = _COMPARE[type(op)]
    operands = [node.left, *node.comparators]
    expr = f"{_segment(text, operands[index])} {symbol} {_segment(text, operands[index + 1])}"
    if left is NO_HISTORY or right is NO_HISTORY:
        return Condition(expr, True, left=left, op=symbol, right=right, no_history=True)
    try:
        passed = left is not None and right is not None and bool(function(left, right))
    except TypeError:
        passed = False
    return Condition(expr, passed, left=left, op=symbol, right=right)


def _value(node: ast.expr, values: _Scope) -> Any:
    """An arithmetic value; None when a NULL is involved or the arithmetic is impossible,
    :data:`NO_HISTORY` when a baseline has no earlier value."""
    if isinstance(node, ast.Name):
        return values.values[node.id]
    if isinstance(node, ast.Call):
        return values.baselines.get(baseline_of(node, ast.unparse(node)), NO_HISTORY)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, values)
        if operand is None or operand is NO_HISTORY:
            return operand
        try:
            return -operand if isinstance(node.op, ast.USub) else +operand
        except TypeError:
            return None
    assert isinstance(node, ast.BinOp)
    left, right = _value(node.left, values), _value(node.right, values)
    if left is NO_HISTORY or right is NO_HISTORY:
        return NO_HISTORY
    if left is None or right is None:
        return None
    try:
        return _ARITHMETIC[type(node.op)](left, right)
    except (TypeError, ZeroDivisionError, ArithmeticError):
        return None
