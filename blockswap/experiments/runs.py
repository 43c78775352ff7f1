"""One unit of work of an experiment (`Run`) and the names its key is made of.

Every run has a stable key (its folder below ``OUT/runs/``), so a rerun finds what is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..space.budget import Budget

PHASES = ("teacher", "search", "student")


@dataclass(frozen=True)
class Run:
    """One unit of work. `detail` says what to build; its values are JSON."""

    key: str  # e.g. "student/random/200k/n017/s0": also the run's folder below OUT/runs
    phase: str  # one of PHASES
    method: str  # "teacher", "search" or a student method of `methods.METHODS`
    budget: str | None  # the budget's text ("params=200K"), None for budget-free runs
    seed: int
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def budget_label(budget: Budget) -> str:
    """'200k' for params=200K, 'macs-90m' for macs=90M: a folder-safe name."""
    n = budget.target
    if budget.metric == "latency":
        return f"latency-{n * 1e3:g}ms"
    value = f"{n / 1e9:g}g" if n >= 1e9 else f"{n / 1e6:g}m" if n >= 1e6 else f"{n / 1e3:g}k" if n >= 1e3 else f"{n:g}"
    return value if budget.metric == "params" else f"{budget.metric}-{value}"


def search_key(series: str, budget: Budget) -> str:
    return f"search/{series}/{budget_label(budget)}"


def search_run(series: str, budget: Budget, seed: int, **detail: Any) -> Run:
    """The search of `series` ("blockswap", "random", ...) at `budget`; `detail`: samples,
    signals (the first ranks) and candidates (None: the experiment's)."""
    return Run(search_key(series, budget), "search", "search", budget.text, seed, detail)
