"""One strict registry type for every named concept (networks, block families, signals, tasks,
datasets, executors, experiment methods, report studies).

A registry maps names to values. Looking up a name it does not hold raises `BlockSwapError`
naming the bad value, the valid names and the nearest one ("did you mean 'torchvision:resnet50'?").
Registering a name twice is refused (a plug-in that silently replaced a built-in would change
results without a word). Besides plain names, an entry may be a *pattern* (a regular expression
that builds the value from its match, e.g. ``wrn-D-k``), shown in messages by its `form`.

    TASKS = Registry("task")

    @TASKS.register("classification")
    class Classification: ...

    TASKS["classification"]          # the value
    TASKS["clasification"]           # BlockSwapError: unknown task 'clasification'; valid tasks:
                                     #   classification, detection; did you mean 'classification'?
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import BlockSwapError, choices

T = TypeVar("T")


def nearest(name: str, names: "list[str] | tuple[str, ...]") -> str | None:
    """The registered name closest to `name` (case-insensitive), or None if none is close.

    A name given without its namespace ('resnet50' for 'torchvision:resnet50') is matched on the
    part after the colon first: difflib alone would prefer the shorter 'resnet18'.
    """
    lowered = {n.lower(): n for n in names}
    key = str(name).strip().lower()
    if ":" not in key:
        for low, original in lowered.items():
            if low.rpartition(":")[2] == key and low != key:
                return original
    match = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def did_you_mean(name: str, names: "list[str] | tuple[str, ...]") -> str:
    """'; did you mean 'x'?' or '' (for the end of an error message)."""
    close = nearest(name, names)
    return f"; did you mean {close!r}?" if close is not None else ""


@dataclass(frozen=True)
class _Pattern(Generic[T]):
    regex: re.Pattern[str]
    make: Callable[[re.Match[str]], T]
    form: str
    examples: tuple[str, ...] = ()  # names it accepts, offered as suggestions


class Registry(Generic[T]):
    """Names -> values, strict. `kind` names one entry in messages ("dataset"); `plural` all."""

    def __init__(self, kind: str, plural: str | None = None, *, case_sensitive: bool = False):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._case_sensitive = case_sensitive
        self._entries: dict[str, T] = {}
        self._patterns: dict[str, _Pattern[T]] = {}

    # ---- registering ---------------------------------------------------------------------
    def _key(self, name: str) -> str:
        name = str(name).strip()
        return name if self._case_sensitive else name.lower()

    def add(self, name: str, value: T) -> T:
        """Register `value` under `name`; refused if the name is taken."""
        key = self._key(name)
        if not key:
            raise BlockSwapError(f"a {self.kind} needs a non-empty name")
        if key in self._entries or key in self._patterns:
            raise BlockSwapError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = value
        return value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: ``@REGISTRY.register("name")``."""

        def wrap(value: T) -> T:
            return self.add(name, value)

        return wrap

    def add_pattern(self, pattern: str, make: Callable[[re.Match[str]], T], form: str | None = None,
                    examples: "tuple[str, ...] | list[str]" = ()) -> None:
        """Every name that fully matches regular expression `pattern` maps to `make(match)`.

        `form` shows the accepted names in messages; `examples` are names it accepts, which an
        unknown name may be suggested ("did you mean 'torchvision:resnet50'?").
        """
        if pattern in self._patterns or pattern in self._entries:
            raise BlockSwapError(f"{self.kind} {pattern!r} is already registered")
        flags = 0 if self._case_sensitive else re.IGNORECASE
        self._patterns[pattern] = _Pattern(re.compile(f"^(?:{pattern})$", flags), make, form or pattern,
                                           tuple(examples))

    def remove(self, name: str) -> None:
        """Unregister `name` (tests and plug-ins that registered something for a while)."""
        key = self._key(name)
        if self._entries.pop(key, None) is None and self._patterns.pop(name, None) is None:
            raise self._unknown(name)

    # ---- looking up ----------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The value of `name`; `BlockSwapError` naming the valid names if there is none."""
        key = self._key(name)
        if key in self._entries:
            return self._entries[key]
        for p in self._patterns.values():
            match = p.regex.match(key)
            if match:
                return p.make(match)
        raise self._unknown(name)

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        return key in self._entries or any(p.regex.match(key) for p in self._patterns.values())

    def names(self) -> list[str]:
        """Plain names, in registration order (patterns excluded: see `forms`)."""
        return list(self._entries)

    def forms(self) -> list[str]:
        """How every entry is written: plain names, then each pattern's form."""
        return [*self._entries, *(p.form for p in self._patterns.values())]

    keys = names  # as a dict's, so dict(REGISTRY) works

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def suggestions(self) -> list[str]:
        """Names an unknown name may be matched against: plain names and the patterns' examples."""
        return [*self._entries, *(e for p in self._patterns.values() for e in p.examples)]

    def suggest(self, name: str) -> str:
        """'; did you mean 'x'?' for the registered name nearest `name`, or ''."""
        return did_you_mean(str(name), self.suggestions())

    def _unknown(self, name: Any) -> BlockSwapError:
        return BlockSwapError(f"unknown {self.kind} {name!r}; valid {self.plural}: {choices(self.forms())}"
                              f"{self.suggest(str(name))}")

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.forms()!r})"
