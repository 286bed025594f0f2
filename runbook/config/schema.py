"""Turning plain YAML data into frozen named tuples, checked against their type hints.

This is the small validation engine behind :mod:`runbook.config`: it knows the handful of types
runbook.yaml uses (str, int, float, bool, dates, ``Literal``, optional values, lists, mappings,
unions and nested named tuples) and a few constraints registered per field with :func:`rules`
(``ge``, ``le``, ``min_items``, ``alias``, ``before`` for a converter such as durations). Its one
job is a precise message for the first mistake: the key path and what was wrong with the value,
e.g. ``processors.pgs.retries.attempts: expected an integer (got 'three')``.

Validation that spans fields lives in the class itself, in a ``check()`` method raising
:class:`Invalid` (or ValueError) with the problem.

It is kept free of heavy imports on purpose: loading the config is on the path of every command.
"""

import datetime as dt
import functools
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, Union


class Invalid(ValueError):
    """A value that does not fit, with the key path (a tuple of keys and indexes) where it is."""

    def __init__(self, message: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class Rule(NamedTuple):
    """Constraints on one field: bounds, at least ``min_items`` entries, its YAML key, a converter."""

    ge: float | None = None
    le: float | None = None
    min_items: int | None = None
    alias: str | None = None
    before: Callable[[Any], Any] | None = None


_RULES: dict[type, dict[str, Rule]] = {}


def rules(cls: type, **fields: Rule) -> None:
    """Register the constraints of ``cls``'s fields."""
    _RULES[cls] = fields


def is_record(hint: Any) -> bool:
    """Whether ``hint`` is one of the config's named-tuple classes."""
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def got(value: Any) -> str:
    """`` (got 'x')`` for scalars; nothing for mappings and lists, which would flood the line."""
    if isinstance(value, dict | list):
        return f" (got a {'mapping' if isinstance(value, dict) else 'list'})"
    text = repr(value)
    return f" (got {text[:80] + '…' if len(text) > 80 else text})"


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, str, Any, Rule, bool], ...]:
    """(field, its key in YAML, its type, its rule, whether it is required) for each field of ``cls``."""
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    found = _RULES.get(cls, {})
    defaults = getattr(cls, "_field_defaults", {})
    return tuple(
        (
            name,
            found.get(name, Rule()).alias or name,
            hints[name],
            found.get(name, Rule()),
            name not in defaults,
        )
        for name in getattr(cls, "_fields", ())
    )


def _suggestion(key: Any, known: set[str]) -> str:
    """What a misspelt key was probably meant to be, or the keys there are when they are few."""
    import difflib

    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known keys: {', '.join(sorted(known))})" if len(known) <= 8 else ""


def build(cls: type, data: Any, path: tuple[Any, ...] = ()) -> Any:
    """An instance of the named tuple ``cls`` from the mapping ``data``; Invalid on the first mistake."""
    if not isinstance(data, dict):
        raise Invalid(f"expected a mapping{got(data)}", path)
    fields = _fields(cls)
    known = {key for _, key, _, _, _ in fields}
    for key in data:
        if key not in known:
            raise Invalid(f"unknown key{_suggestion(key, known)}", (*path, key))
    values: dict[str, Any] = {}
    for name, key, hint, rule, required in fields:
        if key in data:
            values[name] = _field_value(rule, hint, data[key], (*path, key))
        elif required:
            raise Invalid("required key is missing", (*path, key))
    try:
        instance = cls(**values)
        check = getattr(instance, "check", None)
        if check is not None:
            check()
    except Invalid as exc:
        raise Invalid(exc.message, (*path, *exc.path)) from None
    except ValueError as exc:
        raise Invalid(str(exc), path) from None
    return instance


def _field_value(rule: Rule, hint: Any, value: Any, path: tuple[Any, ...]) -> Any:
    if rule.before is not None:
        try:
            value = rule.before(value)
        except ValueError as exc:
            raise Invalid(str(exc), path) from None
    value = convert(hint, value, path)
    if value is None:
        return value
    if rule.ge is not None and value < rule.ge:
        raise Invalid(f"must be at least {rule.ge:g}{got(value)}", path)
    if rule.le is not None and value > rule.le:
        raise Invalid(f"must be at most {rule.le:g}{got(value)}", path)
    if rule.min_items is not None and len(value) < rule.min_items:
        what = "entry" if rule.min_items == 1 else "entries"
        raise Invalid(f"needs at least {rule.min_items} {what}", path)
    return value


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dt.date: "a date"}


def convert(hint: Any, value: Any, path: tuple[Any, ...]) -> Any:
    """``value`` as the type ``hint`` describes, or Invalid naming what was expected."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return _union(typing.get_args(hint), value, path)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise Invalid(f"expected one of {', '.join(map(str, choices))}{got(value)}", path)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise Invalid(f"expected a list{got(value)}", path)
        (item,) = typing.get_args(hint)
        return [convert(item, entry, (*path, index)) for index, entry in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise Invalid(f"expected a mapping{got(value)}", path)
        _, item = typing.get_args(hint)
        return {str(key): convert(item, entry, (*path, key)) for key, entry in value.items()}
    if is_record(hint):
        return build(hint, value, path)
    return _scalar(hint, value, path)


def _union(options: tuple[Any, ...], value: Any, path: tuple[Any, ...]) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise Invalid("a value is required", path)
    real = [option for option in options if option is not type(None)]
    if len(real) == 1:
        return convert(real[0], value, path)
    # Several kinds (str | list[str], str | VersionCommand): the first whose shape fits decides.
    for option in real:
        origin = typing.get_origin(option) or option
        if origin is list and isinstance(value, list) or origin is dict and isinstance(value, dict):
            return convert(option, value, path)
        if is_record(option) and isinstance(value, dict):
            return convert(option, value, path)
        if option in _NAMES and not isinstance(value, dict | list):
            return convert(option, value, path)
    names = " or ".join(_describe(option) for option in real)
    raise Invalid(f"expected {names}{got(value)}", path)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    if origin is list:
        return "a list"
    if origin is dict or is_record(hint):
        return "a mapping"
    return _NAMES.get(hint, str(hint))


def _scalar(hint: Any, value: Any, path: tuple[Any, ...]) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    elif hint is dt.date:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise Invalid(f"not a valid date{got(value)} (use YYYY-MM-DD)", path) from None
    else:  # pragma: no cover - a type hint this engine does not know is a bug in runbook
        raise TypeError(f"unsupported type hint {hint!r} at {path}")
    raise Invalid(f"expected {_NAMES[hint]}{got(value)}", path)


def dump(instance: Any) -> Any:
    """A config object (and what it holds) as plain data, keyed by field names (not aliases)."""
    if isinstance(instance, tuple) and hasattr(instance, "_fields"):
        return {name: dump(getattr(instance, name)) for name in instance._fields}
    if isinstance(instance, list | tuple):
        return [dump(item) for item in instance]
    if isinstance(instance, dict):
        return {key: dump(item) for key, item in instance.items()}
    return instance
