"""Typed values of an experiment file: every key checked against the type its dataclass field
declares, and named in the one-line error (``distill = "false"`` is refused, not read as true).

    parse_fields(BlockSwapOptions, {"samples": [10, 100]}, "exp.toml [methods.blockswap]")

Supported field types: ``bool``, ``int``, ``float`` (an integer is accepted), ``str``,
``tuple[X, ...]`` (a non-empty TOML list) and ``X | None`` (None only from a stored spec: TOML
has no null).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ..errors import BlockSwapError, choices

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def typed(value: Any, hint: Any, key: str, where: str) -> Any:
    """`value` checked against type `hint` (lists become tuples); BlockSwapError naming `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        errors = []
        for option in rest:  # the first type the value has (e.g. amp: True, or "cpu")
            try:
                return typed(value, option, key, where)
            except BlockSwapError as exc:
                errors.append(exc)
        raise errors[0] if len(rest) == 1 else BlockSwapError(
            f"{where}: {key!r} must be {' or '.join(_describe(a) for a in rest)}, got {value!r}")
    if origin is tuple:
        item = args[0]
        if not isinstance(value, (list, tuple)) or not value:
            raise BlockSwapError(f"{where}: {key!r} must be a non-empty list of {_describe(item)}s, got {value!r}")
        return tuple(typed(v, item, key, where) for v in value)
    if hint is Any or hint not in _NAMES:
        return value
    ok = (isinstance(value, bool) if hint is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float else
          isinstance(value, hint) and not isinstance(value, bool) if hint is int else isinstance(value, hint))
    if not ok:
        raise BlockSwapError(f"{where}: {key!r} must be {_NAMES[hint]}, got {value!r}")
    return float(value) if hint is float else value


def _describe(hint: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, "value")


def check_keys(raw: dict[str, Any], known: "set[str] | list[str]", where: str) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise BlockSwapError(f"{where}: unknown key {unknown[0]!r}; valid keys: {choices(sorted(known))}")


def parse_fields(cls: type, raw: Any, where: str, *, ignore: "tuple[str, ...]" = ()) -> Any:
    """An instance of dataclass `cls` from table `raw`: unknown keys refused (listing the valid
    ones), every value type-checked, missing required keys named; the class's own checks
    (``__post_init__``) are prefixed with `where`. Keys in `ignore` are left to the caller."""
    if not isinstance(raw, dict):
        raise BlockSwapError(f"{where} must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    check_keys({k: v for k, v in raw.items() if k not in ignore}, names, where)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in raw:
            values[f.name] = typed(raw[f.name], hints[f.name], f.name, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BlockSwapError(f"{where}: missing key {f.name!r}")
    try:
        return cls(**values)
    except BlockSwapError as exc:
        raise BlockSwapError(f"{where}: {exc}") from None


def positive(value: int, key: str) -> None:
    """For ``__post_init__`` checks: `value` must be >= 1."""
    if value < 1:
        raise BlockSwapError(f"{key!r} must be a positive integer, got {value!r}")


def as_dict(options: Any) -> dict[str, Any]:
    """Options as JSON values (tuples as lists), the form `parse_fields` reads back."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}


def positive_all(values: "tuple[int, ...] | None", key: str) -> None:
    for v in values or ():
        positive(v, key)
