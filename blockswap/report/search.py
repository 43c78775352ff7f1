"""The scored candidates of a search: a ranked table and a plot of the signal against cost
(paper Sec. 4: the highest Fisher potential wins)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BlockSwapError
from ..search.store import open_search
from .plots import pyplot, save_figure


@dataclass(frozen=True)
class SearchTable:
    """The scored candidates of one search folder."""

    folder: Path
    signal: str  # the ranking signal (e.g. "fisher")
    higher_is_better: bool
    rows: list[dict[str, Any]]  # index, genotype, params, macs, score (None if not scored)
    order: tuple[int, ...] = ()  # scored candidate indices, best first (`proxies.rank`)

    @property
    def scored(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["score"] is not None]

    def ranked(self) -> list[dict[str, Any]]:
        by_index = {r["index"]: r for r in self.rows}
        return [by_index[i] for i in self.order]


def search_table(folder: "str | Path") -> SearchTable:
    """Every candidate of a search folder and its ranking score, read from its results file
    (the truth: a finished, interrupted or running search, never an exported copy)."""
    folder = Path(folder)
    with open_search(folder) as store:
        config = store.config()
        full = store.scores("full")
        signal = config.rank_signal
        rows = [{"index": c.index, "genotype": c.genotype, "params": c.params, "macs": c.macs,
                 "score": full[c.index]["score"] if c.index in full else None}
                for c in store.candidates()]
        order = store.ranked("full")
    return SearchTable(folder, signal.name, signal.higher_is_better, rows, tuple(order))


def plot_search(table: SearchTable, path: str | Path, metric: str = "params") -> Path:
    """Scatter of the ranking signal against cost for every scored candidate; winner starred."""
    plt = pyplot()
    scored = table.scored
    if not scored:
        raise BlockSwapError(f"no scored candidates in {str(table.folder)!r}")
    best = table.ranked()[0]
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax.scatter([r[metric] for r in scored], [r["score"] for r in scored], s=8, alpha=0.5,
               label=f"{len(scored)} candidates")
    ax.scatter([best[metric]], [best["score"]], marker="*", s=200, color="C3", label="winner")
    ax.set_xlabel("parameters" if metric == "params" else "MACs per image")
    ax.set_ylabel(table.signal)
    values = [r["score"] for r in scored]
    # Fisher potentials span orders of magnitude: show them on a log scale when all are positive.
    log = table.signal.startswith("fisher") and min(values) > 0
    if log:
        ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"search {table.folder.name}: {table.signal} vs {metric}")
    if log:
        values = [math.log10(v) for v in values]
    hist.set_xlabel(f"log10 {table.signal}" if log else table.signal)
    hist.hist(values, bins=30)
    hist.set_ylabel("candidates")
    return save_figure(fig, path)
