"""The experiment report's figures, one PNG each (matplotlib Agg, written atomically): error
against cost with Pareto fronts (paper Figure 3), random-network densities (Figure 2), block
sensitivity (Appendix B, Figure 4), a genotype picture (Appendix D) and block frequencies of
good and bad networks (Sec. 4.4). No torch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BlockSwapError, choices
from .plots import pyplot, save_figure
from .stats import gaussian_kde, pareto_front

COSTS = ("params", "macs")
FAMILY_COLOURS = {"S": "#4c72b0", "G": "#dd8452", "B": "#55a868", "BG": "#c44e52", "GL": "#8172b3", "GS": "#937860"}
_OTHER = "#8c8c8c"
_MARKERS = "osD^vP*Xh<>"
_DASHES = (":", "--", "-.", (0, (1, 3)), (0, (5, 2, 1, 2)))


def count_text(x: float, _pos: Any = None) -> str:
    """A count as axis text: 1.2M, 200K, 7 (no '1e7' offset)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if x >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


def error_vs_cost(rows: Sequence[dict[str, Any]], path: str | Path, cost: str = "params",
                  paper_rows: Sequence[dict[str, Any]] | None = None, title: str | None = None) -> Path:
    """Top-1 error against parameters or MACs, one colour per method, each method's Pareto front
    as a step line; `paper_rows` in the same colours with hollow markers (the Figure 3 layout)."""
    if cost not in COSTS:
        raise BlockSwapError(f"unknown cost axis {cost!r}; valid: {choices(COSTS)}")
    from matplotlib.ticker import FuncFormatter

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    key = f"cost_{cost}"
    methods: list[str] = []
    for r in [*rows, *(paper_rows or [])]:
        if r["method"] not in methods:
            methods.append(r["method"])
    colours = plt.get_cmap("tab10")
    for m_i, method in enumerate(methods):
        colour, marker = colours(m_i % 10), _MARKERS[m_i % len(_MARKERS)]
        for src, hollow in ((rows, False), (paper_rows or [], True)):
            pts = [r for r in src if r["method"] == method and r.get(key) is not None
                   and not math.isnan(r[key]) and r.get("error") is not None]
            if not pts:
                continue
            xs, ys = [r[key] for r in pts], [r["error"] for r in pts]
            yerr = [r.get("error_std") or 0.0 for r in pts]
            name = f"{method} (paper)" if hollow else method
            ax.errorbar(xs, ys, yerr=yerr if any(yerr) else None, fmt=marker, color=colour, label=name,
                        mfc="none" if hollow else colour, ms=6 if not hollow else 7, capsize=2, lw=1,
                        alpha=0.6 if method == "random" and not hollow else 1.0)
            front = sorted(pareto_front(list(zip(xs, ys))), key=lambda i: xs[i])
            if len(front) > 1:
                # The front joined point to point in cost order: a step line would draw each error as a
                # horizontal run up to the next cheaper-is-worse point, across the plot on a log axis.
                ax.plot([xs[i] for i in front], [ys[i] for i in front], color=colour, lw=1,
                        ls="--" if hollow else "-", alpha=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(count_text))
    low, high = ax.get_xlim()
    # Less than a decade wide, a log axis has no major tick to label: label the minor ones.
    ax.xaxis.set_minor_formatter(FuncFormatter(count_text if high / low < 10 else (lambda x, p: "")))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("non-zero parameters" if cost == "params" else "MACs per image")
    ax.set_ylabel("top-1 error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def error_densities(random_errors: dict[str, list[float]], lines: dict[str, dict[str, float]],
                    path: str | Path) -> Path:
    """One panel per budget: the density of the random networks' final errors (filled, with a rug)
    and each reference student's error as a vertical line: BlockSwap solid reds (one shade and width
    each), single-blocktype students grey, one dash pattern each (paper Figure 2)."""
    plt = pyplot()
    budgets = list(random_errors) or ["-"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets), 3.6), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        errs = np.asarray(random_errors.get(budget, []), dtype=float)
        refs = lines.get(budget, {})
        every = np.concatenate([errs, np.asarray(list(refs.values()), dtype=float)])
        if every.size:
            lo, hi = float(every.min()), float(every.max())
            pad = max(0.5, 0.15 * (hi - lo))
            grid = np.linspace(lo - pad, hi + pad, 300)
            dens = gaussian_kde(errs, grid) if errs.size else np.zeros_like(grid)
            ax.fill_between(grid, dens, color="#4c72b0", alpha=0.35, label=f"random ({errs.size})")
            ax.plot(grid, dens, color="#4c72b0", lw=1)
            top = float(dens.max()) if dens.max() > 0 else 1.0
            ax.plot(errs, np.full(errs.shape, -0.04 * top), "|", color="#4c72b0", ms=10)
            singles = sorted((kv for kv in refs.items() if not kv[0].lower().startswith("blockswap")),
                             key=lambda kv: kv[1])
            for i, (name, err) in enumerate(singles):
                # Single-blocktype students: thin grey lines of distinct dashes, names in the legend.
                ax.axvline(err, color="0.35", ls=_DASHES[i % len(_DASHES)], lw=1.2, label=f"{name} {err:.2f}")
            picks = sorted(kv for kv in refs.items() if kv not in singles)
            for j, (name, err) in enumerate(picks):
                # BlockSwap students: solid reds, light and wide to dark and narrow, drawn in that
                # order, so that picks at the same error (best of 100 = best of 1000) stay visible.
                t = j / max(len(picks) - 1, 1)
                ax.axvline(err, color=plt.cm.Reds(0.45 + 0.5 * t), ls="-", lw=5.0 - 3.0 * t,
                           label=f"{name} {err:.2f}")
        ax.set_title(f"budget {budget}")
        ax.set_xlabel("top-1 error (%)")
        ax.set_yticks([])
        # Legend under its panel, never over the density curve (each panel's lines differ).
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    axes[0][0].set_ylabel("density")
    return save_figure(fig, path)


def sensitivity_bars(positions: list[int], errors: list[float], params: list[int], path: str | Path,
                     reference_error: float | None = None) -> Path:
    """Final error and parameters with block i swapped (paper Appendix B, Figure 4)."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(5.0, 0.45 * len(positions) + 2), 5), sharex=True)
    top.bar(positions, errors, color="#dd8452")
    if reference_error is not None:
        top.axhline(reference_error, color="k", ls="--", lw=1, label=f"no block swapped {reference_error:.2f}")
        top.legend(fontsize=8)
    if errors:
        lo, hi = min(errors + ([reference_error] if reference_error is not None else [])), max(errors)
        top.set_ylim(max(0.0, lo - 0.2 * (hi - lo + 1e-9) - 0.5), hi + 0.2 * (hi - lo + 1e-9) + 0.5)
    top.set_ylabel("top-1 error (%)")
    bottom.bar(positions, params, color="#4c72b0")
    bottom.yaxis.set_major_formatter(_formatter())
    bottom.set_ylabel("parameters")
    bottom.set_xlabel("block swapped")
    bottom.set_xticks(positions)
    return save_figure(fig, path)


def _formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(count_text)


def _family(block: str) -> str:
    return block.split("(")[0]


def genotype_picture(blocks: list[str], costs: list[int], path: str | Path, title: str | None = None,
                     stage_of: list[int] | None = None) -> Path:
    """The network as a row of bars, one per block, coloured by family, height its parameter count
    (on the y axis), gaps between stages."""
    from matplotlib.patches import Patch, Rectangle

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(blocks) + 1.5), 2.8))
    x = 0.0
    for i, (block, cost) in enumerate(zip(blocks, costs)):
        if stage_of is not None and i > 0 and stage_of[i] != stage_of[i - 1]:
            x += 0.4
        colour = FAMILY_COLOURS.get(_family(block), _OTHER)
        ax.add_patch(Rectangle((x, 0), 0.9, cost, color=colour, ec="k", lw=0.5))
        ax.text(x + 0.45, 0, block + " ", ha="right", va="top", rotation=60, fontsize=7,
                rotation_mode="anchor", transform=ax.transData)
        x += 1.0
    ax.set_xlim(-0.2, x + 0.1)
    ax.set_ylim(0, 1.08 * (max(costs) if costs else 1))
    # Bar height is the block's parameter count (Appendix D's pictures), on a labelled axis.
    ax.yaxis.set_major_formatter(_formatter())
    ax.set_ylabel("parameters", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xticks([])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    used = [f for f in FAMILY_COLOURS if any(_family(b) == f for b in blocks)]
    others = sorted({_family(b) for b in blocks} - set(FAMILY_COLOURS))
    ax.legend(handles=[Patch(color=FAMILY_COLOURS[f], label=f) for f in used]
              + [Patch(color=_OTHER, label=f) for f in others], loc="upper left", fontsize=7,
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    return save_figure(fig, path)


def block_frequencies(freqs: dict[str, dict[int, dict[str, float]]], path: str | Path) -> Path:
    """Stacked family fractions per position, one panel per group (paper Sec. 4.4)."""
    plt = pyplot()
    groups = list(freqs) or ["-"]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.2), squeeze=False, sharey=True)
    families = sorted({f for g in freqs.values() for pos in g.values() for f in pos},
                      key=lambda f: (list(FAMILY_COLOURS).index(f) if f in FAMILY_COLOURS else 99, f))
    for ax, group in zip(axes[0], groups):
        per_pos = freqs.get(group, {})
        positions = sorted(per_pos)
        bottom = np.zeros(len(positions))
        for fam in families:
            vals = np.array([per_pos[p].get(fam, 0.0) for p in positions])
            ax.bar(positions, vals, bottom=bottom, color=FAMILY_COLOURS.get(fam, _OTHER), label=fam)
            bottom += vals
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("block position")
        if positions:
            ax.set_xticks(positions)
    axes[0][0].set_ylabel("fraction of networks")
    # Beside the last panel: the bars fill each panel to 1, so any legend inside covers them.
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, title="family",
                       title_fontsize=7)
    return save_figure(fig, path)
