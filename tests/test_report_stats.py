"""The report's statistics against brute-force computations, and its figures as real PNG files."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from blockswap.errors import BlockSwapError
from blockswap.report.figures import (block_frequencies, error_densities, error_vs_cost, genotype_picture,
                                      sensitivity_bars)
from blockswap.report.stats import best_of_first, correlation, pareto_front

PNG = b"\x89PNG\r\n\x1a\n"


def kendall_brute(x, y) -> float:
    pairs = list(itertools.combinations(range(len(x)), 2))
    s = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in pairs)
    return s / len(pairs)


def spearman_brute(x, y) -> float:
    rx, ry = np.argsort(np.argsort(x)).astype(float), np.argsort(np.argsort(y)).astype(float)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / math.sqrt((rx ** 2).sum() * (ry ** 2).sum()))


def sample(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, -0.6 * x + rng.normal(size=n)  # negatively correlated, no ties


def test_kendall_and_spearman_equal_brute_force_with_signs():
    x, y = sample(30)
    assert correlation(x, y, "kendall").value == pytest.approx(kendall_brute(x, y), abs=1e-12)
    assert correlation(x, y, "spearman").value == pytest.approx(spearman_brute(x, y), abs=1e-12)
    assert correlation([1, 2, 3, 4], [4, 3, 2, 1], "kendall").value == pytest.approx(-1.0)


def test_bootstrap_interval_holds_the_estimate_is_seeded_and_narrows():
    x, y = sample(20)
    c = correlation(x, y, "spearman", seed=3)
    assert c.low <= c.value <= c.high and c.n == 20
    assert correlation(x, y, "spearman", seed=3) == c
    big = correlation(*sample(400), "spearman", seed=3)
    assert big.high - big.low < c.high - c.low


def test_missing_values_are_dropped_and_too_few_give_nan():
    c = correlation([1.0, None, 3.0, float("nan"), 5.0, 6.0], [1, 2, 3, 4, 5, 7], "kendall")
    assert c.n == 4 and c.value == pytest.approx(1.0)
    assert math.isnan(correlation([1, 2], [2, 1]).value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning from scipy: the NaN is ours
        for method in ("kendall", "spearman"):
            c = correlation([7, 7, 7, 7], [1, 2, 3, 4], method)
            assert c.n == 4 and math.isnan(c.value) and math.isnan(c.low)
    with pytest.raises(BlockSwapError, match="unknown correlation 'pearson'.*kendall, spearman"):
        correlation([1, 2, 3], [1, 2, 3], "pearson")


def test_pareto_front_equals_brute_force_dominance():
    rng = np.random.default_rng(1)
    pts = [tuple(p) for p in rng.integers(0, 20, size=(60, 2)).astype(float)]
    front = pareto_front(pts)

    def dominated(i):
        return any(pts[j][0] <= pts[i][0] and pts[j][1] <= pts[i][1] and pts[j] != pts[i] for j in range(len(pts)))

    first = {}
    for i, p in enumerate(pts):
        first.setdefault(p, i)
    want = sorted((i for i in range(len(pts)) if not dominated(i) and first[pts[i]] == i), key=lambda i: pts[i])
    assert front == want


def test_best_of_first_equals_a_loop():
    rng = np.random.default_rng(2)
    scores, errors = rng.normal(size=50), rng.uniform(5, 10, size=50)
    got = best_of_first(scores, errors, [1, 10, 50, 80])
    for n in (1, 10, 50):
        best = 0
        for i in range(n):
            if scores[i] > scores[best]:
                best = i
        assert got[n] == errors[best]
    assert 80 not in got  # more than were sampled


def test_figures_are_png_files(tmp_path):
    rows = [{"method": "blockswap", "cost_params": 2e5, "cost_macs": 3e7, "error": 5.0, "error_std": 0.3},
            {"method": "random", "cost_params": 1.9e5, "cost_macs": 2.5e7, "error": 6.0, "error_std": None},
            {"method": "random", "cost_params": 2.1e5, "cost_macs": 2.8e7, "error": 5.5, "error_std": None}]
    paths = [
        error_vs_cost(rows, tmp_path / "p.png", "params", paper_rows=[dict(rows[0], error=4.7)]),
        error_vs_cost(rows, tmp_path / "m.png", "macs"),
        error_densities({"200K": [5.0, 5.5, 6.1, 7.0]}, {"200K": {"single G(4)": 6.0}}, tmp_path / "d.png"),
        sensitivity_bars([0, 1, 2], [5.0, 6.0, 5.5], [100, 90, 95], tmp_path / "s.png", reference_error=5.1),
        genotype_picture(["S", "G(4)", "BG(2,M/4)", "B(2)"], [1000, 300, 200, 400], tmp_path / "g.png",
                         stage_of=[0, 0, 1, 1]),
        block_frequencies({"good": {0: {"S": 0.5, "G": 0.5}}, "bad": {0: {"B": 1.0}}}, tmp_path / "f.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG
    with pytest.raises(BlockSwapError, match="unknown cost axis 'flops'.*macs, params|params, macs"):
        error_vs_cost(rows, tmp_path / "x.png", "flops")


def test_mean_std_claims_no_spread_for_one_run():
    from blockswap.report.stats import mean_std

    mean, std = mean_std([86.6, 80.0, 83.0])
    assert mean == pytest.approx((86.6 + 80.0 + 83.0) / 3)
    assert std == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in (86.6, 80.0, 83.0)) / 2))
    assert mean_std([5.0]) == (5.0, None)
