"""The ``expect:`` conditions of checks: a tiny, safe expression language evaluated without ``eval``.

A condition is parsed with Python's :mod:`ast` and only these nodes are accepted: names, numbers,
``+ - * /`` (and a leading ``-``), parentheses, the comparisons ``>= > <= < == !=`` (chains such
as ``0 <= x <= 100`` too), and ``and`` / ``or`` / ``not``. Anything else (calls, attributes,
strings, subscripts, ``**``) is refused when the config is loaded, so a condition can never run
code. Names are the check query's metrics and the calendar values runbook supplies
(:data:`CALENDAR_NAMES`).

Evaluating never raises on data: a NULL metric, a division by zero or values that cannot be
compared make the condition fail, and the recorded values show why.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
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
_ALLOWED = "names, numbers, + - * /, parentheses, >= > <= < == !=, and, or, not"


class ExpressionError(ValueError):
    """A condition that is not valid: the message says what is wrong with it."""


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

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expr": self.expr,
            "left": _json_number(self.left),
            "op": self.op,
            "right": _json_number(self.right),
            "passed": self.passed,
        }
        if self.parts:
            data["parts"] = [part.as_dict() for part in self.parts]
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
        _vet_condition(tree, text, names)
        return cls(source, tree, frozenset(names))

    def evaluate(self, values: Mapping[str, Any]) -> Condition:
        """The outcome of the condition with ``values`` for its names (all must be present)."""
        return _condition(self.tree, self.text, values)


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


def _vet_condition(node: ast.expr, text: str, names: set[str]) -> None:
    """A condition: a comparison of values, or conditions joined by and / or / not."""
    if isinstance(node, ast.Compare):
        bad = [op for op in node.ops if type(op) not in _COMPARE]
        if bad:
            word = _WORDS.get(type(bad[0]), type(bad[0]).__name__)
            raise ExpressionError(f"{text!r}: {word!r} is not allowed (allowed: {_ALLOWED})")
        for operand in (node.left, *node.comparators):
            _vet_value(operand, text, names)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _vet_condition(value, text, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _vet_condition(node.operand, text, names)
    elif isinstance(node, ast.Name | ast.Constant | ast.BinOp | ast.UnaryOp):
        part = _segment(text, node)
        raise ExpressionError(f"{text!r}: {part!r} is not a condition: compare it, e.g. 'duplicates == 0'")
    else:
        _refuse(node, text)


def _vet_value(node: ast.expr, text: str, names: set[str]) -> None:
    """A value: a name, a number, or arithmetic on values."""
    if isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"{text!r}: only numbers may be written as values (got {node.value!r})")
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        _vet_value(node.left, text, names)
        _vet_value(node.right, text, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _vet_value(node.operand, text, names)
    else:
        _refuse(node, text)


def _refuse(node: ast.AST, text: str) -> None:
    raise ExpressionError(f"{text!r}: {_segment(text, node)!r} is not allowed (allowed: {_ALLOWED})")


def _segment(text: str, node: ast.AST) -> str:
    return ast.get_source_segment(text.strip(), node) or ast.unparse(node)


def _condition(node: ast.expr, text: str, values: Mapping[str, Any]) -> Condition:
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
    try:
        passed = left is not None and right is not None and bool(function(left, right))
    except TypeError:
        passed = False
    return Condition(expr, passed, left=left, op=symbol, right=right)


def _value(node: ast.expr, values: Mapping[str, Any]) -> Any:
    """An arithmetic value; None when a NULL is involved or the arithmetic is impossible."""
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, values)
        if operand is None:
            return None
        try:
            return -operand if isinstance(node.op, ast.USub) else +operand
        except TypeError:
            return None
    assert isinstance(node, ast.BinOp)
    left, right = _value(node.left, values), _value(node.right, values)
    if left is None or right is None:
        return None
    try:
        return _ARITHMETIC[type(node.op)](left, right)
    except (TypeError, ZeroDivisionError, ArithmeticError):
        return None
