"""Ranking signals against final error (paper Table 1, Sec. 4.2): Kendall and Spearman
correlations of every signal measured on the random networks, with bootstrap intervals."""

from __future__ import annotations

import math

from ...experiments.runs import budget_label
from ..document import Section, Table
from ..stats import correlation
from .base import RANDOM, STUDIES, Context, Study, budget_text, has, random_nets


def _corr(c) -> str:
    if c.n < 3 or math.isnan(c.value):
        return "-"
    return f"{c.value:+.3f} [{c.low:+.2f}, {c.high:+.2f}]"


def signals(ctx: Context) -> Section:
    tables, text, paper = [], [], ctx.paper
    for b in ctx.budgets:
        nets = random_nets(ctx.done, b)
        if len(nets) < 3:
            continue
        errors = [n["error"] for n in nets]
        names = list(nets[0]["signals"]) + ["params"]
        theirs = (paper or {}).get("correlations", {}).get("budgets", {}).get(budget_label(b), {})
        rows = []
        for name in names:
            values = [n["params"] if name == "params" else n["signals"].get(name) for n in nets]
            k = correlation(values, errors, "kendall")
            s = correlation(values, errors, "spearman")
            rows.append([name, _corr(k), _corr(s), k.n, f"{theirs[name]:+.3f}" if name in theirs else "-"])
        tables.append(Table(["signal", "Kendall tau [95% CI]", "Spearman rho [95% CI]", "networks",
                             "paper (Table 1)"], rows, caption=f"Budget {budget_text(b)}: {len(nets)} random networks"))
    text.append("How well each signal, measured at initialisation (or after k minibatches of SGD, `@k`), predicts the "
                "final error of the random networks (paper Table 1). Signs are kept: a good signal for "
                "'higher is better' is negatively correlated with error. Intervals: percentile bootstrap over "
                "networks (2000 resamples).")
    if paper and "correlations" in paper:
        text.append(f"Paper column: {paper['correlations']['statistic']}; on {paper['dataset']}.")
    return Section("Ranking signals against final error (Table 1)", text, tables)


STUDIES.add("signals", Study("signals", has(RANDOM), signals, order=30))
