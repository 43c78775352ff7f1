"""Budgets: a cost target with a relative window (the paper, Sec. 4, gives no width; the
authors' code accepts +-2.5%, our default).

``800k`` means 800,000 parameters, ``params=800k`` the same, ``macs=90M`` 90 million
multiply-accumulates per image. Counts take k/M/G suffixes (powers of ten). ``latency=12ms``
is 12 milliseconds per batch as a latency table predicts it (`space.latency`; the target is
held in seconds; ``us``, ``ms`` and ``s`` suffixes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BlockSwapError, choices


METRICS = ("params", "macs", "latency")
_TIME = re.compile(r"^(?P<num>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(?P<unit>us|ms|s)$")
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_NUMBER = re.compile(r"^(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)(?P<suffix>[kmg]?)$")


@dataclass(frozen=True)
class Budget:
    """A cost target with a relative window: accept cost within target * (1 +- tolerance).

    The authors' code (both versions) uses +-2.5% around the parameter budget.
    """

    metric: str = "params"  # "params", "macs" or "latency"
    target: float = 800_000  # a count, or seconds for latency
    tolerance: float = 0.025

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise BlockSwapError(f"unknown budget metric {self.metric!r}; valid metrics: {choices(METRICS)}")
        if not self.target > 0:
            raise BlockSwapError(f"budget target must be positive, got {self.target!r}")
        if not 0 < self.tolerance < 1:
            raise BlockSwapError(f"budget tolerance must be between 0 and 1 (e.g. 0.025), got {self.tolerance!r}")

    @property
    def lower(self) -> float:
        return self.target * (1 - self.tolerance)

    @property
    def upper(self) -> float:
        return self.target * (1 + self.tolerance)

    def contains(self, value):
        return (value >= self.lower) & (value <= self.upper)

    def __str__(self) -> str:
        return f"{self.metric}={format_cost(self.target, self.metric)} +-{self.tolerance:.1%}"

    @property
    def text(self) -> str:
        """The form `parse_budget` reads back (without the tolerance)."""
        if self.metric == "latency":
            return f"latency={self.target * 1e3:g}ms"
        # Whole counts in full ("params=12000000"): `:g` would write 1.2e+07 for 12M.
        value = f"{int(self.target)}" if float(self.target).is_integer() else repr(float(self.target))
        return f"{self.metric}={value}"


def parse_count(text: str) -> float:
    """'800k' -> 800000, '1.6M' -> 1600000, '90m' -> 90000000, '2243546' -> 2243546."""
    match = _NUMBER.match(str(text).strip().lower().replace("_", "").replace(",", ""))
    if not match:
        raise BlockSwapError(f"bad count {text!r}: expected a number with an optional k/M/G suffix, e.g. 800k")
    return float(match["num"]) * _SUFFIX[match["suffix"]]


def parse_budget(text: "str | Budget", tolerance: float = 0.025) -> Budget:
    """Parse ``800k`` (parameters), ``params=800k`` or ``macs=90M``."""
    if isinstance(text, Budget):
        return Budget(text.metric, text.target, tolerance)
    text = str(text).strip()
    metric, _, value = text.rpartition("=")
    metric = metric.strip().lower() or "params"
    if metric not in METRICS:
        raise BlockSwapError(f"unknown budget metric {metric!r} in {text!r}; valid metrics: {choices(METRICS)}")
    if metric == "latency":
        return Budget(metric, parse_seconds(value), tolerance)
    try:
        count = parse_count(value)
    except BlockSwapError:
        value = value.strip()
        hint = f"; a latency budget is written latency={value}" if _TIME.match(value.lower()) else ""
        raise BlockSwapError(f"bad budget {text!r}: expected a count with an optional k/M/G suffix, as 800k, "
                             f"params=800k, macs=90M, or a latency as latency=12ms{hint}") from None
    return Budget(metric, count, tolerance)


def parse_seconds(text: str) -> float:
    """'12ms' -> 0.012, '800us' -> 0.0008, '0.5s' -> 0.5 (a unit is required)."""
    match = _TIME.match(str(text).strip().lower())
    if not match:
        raise BlockSwapError(f"bad latency {text!r}: expected a number with a unit us, ms or s, e.g. 12ms")
    return float(match["num"]) * _SECONDS[match["unit"]]


def format_cost(value: float, metric: str) -> str:
    """A cost for people: counts as format_count, latencies in ms."""
    return f"{value * 1e3:.3g}ms" if metric == "latency" else format_count(value)


def format_count(n: float) -> str:
    """811400 -> '811.4K', 132500000 -> '132.5M', 3669000000 -> '3.669G' (the paper's style)."""
    for div, suffix, digits in ((10**9, "G", 3), (10**6, "M", 1), (10**3, "K", 1)):
        if abs(n) >= div:
            return f"{n / div:.{digits}f}{suffix}"
    return f"{n:.0f}"
