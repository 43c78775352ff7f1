"""Budgeted rejection sampling (paper Sec. 4, step 1): no network is built.

Each block's type is drawn uniformly from the candidates that fit its position, and a genotype
is kept if its cost (from `space.costs.CostTable`) lies in the budget window. Vectorised over
chunks of proposals (one numpy pass per chunk, not a Python loop per genotype), because a rare
budget window needs millions of proposals (speed measured: docs/search.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BlockSwapError, choices
from ..space.budget import Budget, format_cost
from ..space.costs import CostTable


@dataclass(frozen=True)
class SampleReport:
    """Accepted genotypes (candidate indices, in acceptance order) and how hard they were to find."""

    choices: np.ndarray  # (accepted, blocks) indices into the candidate list
    draws: int  # proposals drawn
    in_window: int  # proposals within the budget window (duplicates included)
    feasible: tuple[int, int]  # smallest and largest reachable cost
    rare: bool  # acceptance below the configured threshold

    @property
    def acceptance(self) -> float:
        return self.in_window / self.draws if self.draws else 0.0

    def summary(self) -> dict[str, Any]:
        return {"accepted": len(self.choices), "draws": self.draws, "in_window": self.in_window,
                "acceptance": self.acceptance, "feasible": list(self.feasible), "rare": self.rare}


def sample_genotypes(table: CostTable, budget: Budget, n: int, rng: np.random.Generator, *,
                     unique: bool = True, min_acceptance: float = 1e-3,
                     max_draws: int = 20_000_000, chunk: int = 1 << 16) -> SampleReport:
    """Draw genotypes, each block's type uniform over the candidates valid there, until `n` fall
    within `budget` (distinct ones if `unique`). Vectorised over chunks of proposals.

    Fails at once with the feasible range when the window cannot be reached; fails with the
    measured acceptance when `n` acceptances would need more than `max_draws` proposals.
    """
    metric = budget.metric
    low, high = table.range(metric)
    where = f"{table.spec.name} with {choices([c.name for c in table.candidates], limit=6)}"
    if budget.upper < low or budget.lower > high:
        raise BlockSwapError(
            f"budget {budget} ({format_cost(budget.lower, metric)}..{format_cost(budget.upper, metric)} {metric}) "
            f"is outside what {where} can reach: {format_cost(low, metric)}..{format_cost(high, metric)} {metric}"
            + ("" if metric == "latency" else f" ({low:,}..{high:,})"))
    valid_counts = table.valid.sum(axis=1)  # (blocks,)
    # lookup[i, r] = the r-th valid candidate at block i (padding never indexed)
    lookup = np.zeros(table.valid.shape, dtype=np.int64)
    for i, row in enumerate(table.valid):
        idx = np.flatnonzero(row)
        lookup[i, :idx.size] = idx
    positions = np.arange(table.valid.shape[0])
    accepted: list[np.ndarray] = []
    seen: set[bytes] = set()
    draws = in_window = 0
    while len(accepted) < n:
        if draws >= max_draws:
            break
        size = min(chunk, max_draws - draws)
        ranks = rng.integers(0, valid_counts, size=(size, positions.size))
        proposal = lookup[positions[None, :], ranks]
        hits = proposal[budget.contains(table.totals(proposal, metric))]
        draws += size
        in_window += len(hits)
        for row in hits:
            if len(accepted) == n:
                break
            key = row.tobytes()
            if unique and key in seen:
                continue
            seen.add(key)
            accepted.append(row)
        rate = in_window / draws
        if len(accepted) < n and rate > 0 and draws + (n - len(accepted)) / rate > 2 * max_draws:
            break  # hopeless: fail now instead of after max_draws proposals
        if unique and in_window > 50 * n:
            break  # so many hits and still too few distinct ones: the window holds fewer than n
    rate = in_window / draws
    if len(accepted) < n and unique and in_window > 50 * n:
        raise BlockSwapError(
            f"only {len(accepted)} distinct genotypes of {where} fit budget {budget} ({in_window:,} hits in "
            f"{draws:,} proposals), {n} asked; ask fewer samples or widen the tolerance")
    if len(accepted) < n:
        found = "distinct " if unique else ""
        raise BlockSwapError(
            f"budget {budget} is reachable by {where} but rare: {in_window:,} of {draws:,} proposals "
            f"({rate:.2e}) fell in the window and {len(accepted)} {found}genotypes were found, "
            f"{n} asked; widen the tolerance, ask fewer samples, or change the candidates")
    return SampleReport(np.stack(accepted), draws, in_window, (low, high), rate < min_acceptance)
