"""One type and range check for every field of a configuration dataclass.

`check_fields(instance)` reads each init field's annotation and its optional ``metadata``
(keys of `RULES`) and raises `BlockSwapError` naming the field for a value of the wrong type
or out of range. Configs are built from TOML, the CLI and Python alike; checking them in their
``__post_init__`` gives the same one-line error on every path (``halving="false"`` is a string,
not a boolean, and is refused rather than counted as true).

Checked annotations: ``bool`` (True/False only), ``int`` (an integer, never a bool or 1.5),
``float`` (an int or float, never a bool or a string, finite unless ``finite=False``), ``str``
and ``X | None`` of those. Other annotations (parsed types such as a budget) are left to the
config's own parser. Rules: ``min`` / ``max`` (inclusive), ``above`` / ``below`` (exclusive),
``choices`` (a collection of allowed values), ``finite`` (default True for floats), ``path``
(a ``str`` field that also takes an `os.PathLike`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any

from .errors import BlockSwapError
from .errors import choices as render

RULES = ("min", "max", "above", "below", "choices", "finite", "path")
_KINDS = {bool: "true or false (a boolean)", int: "an integer", float: "a number", str: "a string"}


def rules(**given: Any) -> dict[str, Any]:
    """Field metadata for `check_fields`, with the rule names checked: ``field(metadata=rules(min=0))``."""
    unknown = sorted(set(given) - set(RULES))
    if unknown:
        raise BlockSwapError(f"unknown field rule {unknown[0]!r}; valid rules: {render(RULES)}")
    return given


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved is not checked
        return {}


def _plain(annotation: Any) -> tuple[type | None, bool]:
    """(checked type or None, None allowed) of an annotation such as ``int`` or ``float | None``."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            return None, optional
        annotation = args[0]
    return (annotation if annotation in _KINDS else None), optional


def check_value(name: str, value: Any, kind: type, optional: bool = False, **rule: Any) -> None:
    """Raise `BlockSwapError` unless `value` is of `kind` (see the module docstring) within `rule`."""
    if value is None and optional:
        return
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is str and rule.get("path"):
        ok = isinstance(value, (str, os.PathLike))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        what = _KINDS[kind] + (" or none" if optional else "")
        raise BlockSwapError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    if kind is float and rule.get("finite", True) and not math.isfinite(value):
        raise BlockSwapError(f"{name} must be a finite number, got {value!r}")
    allowed = rule.get("choices")
    if allowed is not None and value not in allowed:
        raise BlockSwapError(f"unknown {name} {value!r}; valid {name}s: {render(allowed)}")
    for key, test, words in (("min", lambda v, b: v >= b, ">="), ("max", lambda v, b: v <= b, "<="),
                             ("above", lambda v, b: v > b, ">"), ("below", lambda v, b: v < b, "<")):
        bound = rule.get(key)
        if bound is not None and not test(value, bound):
            words = "positive (> 0)" if (key, bound) == ("above", 0) else f"{words} {bound}"
            raise BlockSwapError(f"{name} must be {words}, got {value!r}")


def check_fields(instance: Any) -> None:
    """Check every init field of the dataclass `instance` against its annotation and metadata."""
    hints = _hints(type(instance))
    for f in dataclasses.fields(instance):
        if not f.init or f.name not in hints:
            continue
        kind, optional = _plain(hints[f.name])
        if kind is None:
            continue
        check_value(f.name, getattr(instance, f.name), kind, optional,
                    **{k: v for k, v in f.metadata.items() if k in RULES})
