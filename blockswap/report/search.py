"""The scored candidates of a search: a ranked table and a plot of the signal against cost
(paper Sec. 4: the highest Fisher potential wins)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BlockSwapError
from ..space.budget import Budget
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
    budget: Budget | None = None  # the window candidates were sampled in (drawn on the plot)

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
    return SearchTable(folder, signal.name, signal.higher_is_better, rows, tuple(order), config.budget)


def _name(folder: Path) -> str:
    """The search's name for a title: its folder, or the folder above a generic 'search' one."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "search" and folder.parent.name else folder.name


def plot_search(table: SearchTable, path: str | Path, metric: str = "params") -> Path:
    """Scatter of the ranking signal against cost for every scored candidate, the winner starred
    and the budget window shaded; beside it the histogram of the signal (counts of candidates)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from .figures import count_text

    plt = pyplot()
    scored = table.scored
    if not scored:
        raise BlockSwapError(f"no scored candidates in {str(table.folder)!r}")
    best = table.ranked()[0]
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    budget = table.budget
    if budget is not None and budget.metric == metric:
        ax.axvspan(budget.lower, budget.upper, color="0.85", zorder=0,
                   label=f"budget {count_text(budget.target)} +-{budget.tolerance:.1%}")
    ax.scatter([r[metric] for r in scored], [r["score"] for r in scored], s=8, alpha=0.5,
               label=f"{len(scored)} candidates")
    ax.scatter([best[metric]], [best["score"]], marker="*", s=200, color="C3", label="winner")
    ax.set_xlabel("parameters" if metric == "params" else "MACs per image")
    # Counts in K/M rather than matplotlib's "1e7" offset above the axis.
    ax.xaxis.set_major_formatter(FuncFormatter(count_text))
    ax.set_ylabel(table.signal)
    values = [r["score"] for r in scored]
    # Fisher potentials span orders of magnitude: show them on a log scale when all are positive.
    log = table.signal.startswith("fisher") and min(values) > 0
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.suptitle(f"search {_name(table.folder)}: {table.signal} against "
                 f"{'parameters' if metric == 'params' else 'MACs'}")
    if log:
        values = [math.log10(v) for v in values]
    hist.set_xlabel(f"log10 {table.signal}" if log else table.signal)
    hist.hist(values, bins=min(30, max(1, len(values))))
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of candidates: whole numbers
    hist.set_ylabel("candidates")
    return save_figure(fig, path)
