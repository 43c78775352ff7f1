"""Statistics of the experiment report: rank correlations with bootstrap intervals (paper Table 1),
Pareto fronts (Figure 3) and the best-ranked of the first n samples (Sec. 4.3). No torch."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import BlockSwapError, choices

METHODS = ("kendall", "spearman")


@dataclass(frozen=True)
class Correlation:
    """A rank correlation with its sign kept, a percentile bootstrap interval, pairs used, p-value."""

    value: float
    low: float
    high: float
    n: int
    pvalue: float


def _statistic(method: str):
    from scipy import stats

    if method == "kendall":
        return lambda x, y: stats.kendalltau(x, y)  # tau-b: ties in either variable handled
    return lambda x, y: stats.spearmanr(x, y)


def correlation(x: Sequence[float | None], y: Sequence[float | None], method: str = "kendall", *,
                resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Correlation:
    """Kendall's tau-b or Spearman's rho of `x` and `y`, with a percentile bootstrap interval
    over pairs (resampled with replacement; resamples whose statistic is undefined dropped).

    Pairs with a missing or NaN value are dropped first; fewer than 3 pairs, or a constant `x` or
    `y`, give NaNs.
    """
    if method not in METHODS:
        raise BlockSwapError(f"unknown correlation {method!r}; valid: {choices(METHODS)}")
    pairs = [(float(a), float(b)) for a, b in zip(x, y)
             if a is not None and b is not None and not (math.isnan(float(a)) or math.isnan(float(b)))]
    n = len(pairs)
    if n < 3:
        return Correlation(math.nan, math.nan, math.nan, n, math.nan)
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:  # a constant signal (e.g. params at a fixed size) ranks nothing
        return Correlation(math.nan, math.nan, math.nan, n, math.nan)
    stat = _statistic(method)
    result = stat(xs, ys)
    value, pvalue = float(result[0]), float(result[1])
    rng = np.random.default_rng(seed)
    boots = []
    with np.errstate(all="ignore"):
        for _ in range(resamples):
            idx = rng.integers(0, n, n)
            if np.ptp(xs[idx]) == 0 or np.ptp(ys[idx]) == 0:
                continue  # a constant resample has no rank correlation
            v = float(stat(xs[idx], ys[idx])[0])
            if not math.isnan(v):
                boots.append(v)
    if not boots:
        return Correlation(value, math.nan, math.nan, n, pvalue)
    tail = (1 - confidence) / 2
    low, high = np.quantile(boots, [tail, 1 - tail])
    return Correlation(value, float(low), float(high), n, pvalue)


def gaussian_kde(values: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """A Gaussian kernel density of `values` on `grid` (Scott's bandwidth); zeros if the values
    have fewer than two distinct points."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    grid = np.asarray(grid, dtype=float)
    if np.unique(values).size < 2:
        return np.zeros_like(grid)
    return stats.gaussian_kde(values)(grid)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower or equal cost and error, one lower),
    both minimised; sorted by cost. Of equal points the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front, best = [], math.inf
    for i in order:
        cost, error = points[i]
        if math.isnan(cost) or math.isnan(error):
            continue
        if error < best:
            front.append(i)
            best = error
    return front


def best_of_first(scores: Sequence[float], errors: Sequence[float], sizes: Sequence[int],
                  higher_is_better: bool = True) -> dict[int, float]:
    """For each n in `sizes`: the error of the best-scored of the first n (paper Sec. 4.3)."""
    out = {}
    for n in sizes:
        if not 1 <= n <= len(scores):
            continue
        head = list(range(n))
        pick = (max if higher_is_better else min)(head, key=lambda i: scores[i])
        out[n] = float(errors[pick])
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1) of repeated runs; the std is None for a single
    value, whose spread is unknown (0.0 would claim a spread of nothing)."""
    if not values:
        raise BlockSwapError("mean_std needs at least one value")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)
