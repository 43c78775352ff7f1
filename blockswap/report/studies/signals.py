"""Ranking signals against final error (paper Table 1, Sec. 4.2): Kendall and Spearman
correlations of every signal measured on the random networks, with bootstrap intervals, and
each signal's top-1 pick: the final error of the network it ranks first."""

from __future__ import annotations

import math
import statistics

from ...experiments.runs import budget_label
from ...proxies.ranking import parse_rank_by
from ..document import Section, Table
from ..stats import correlation
from .base import RANDOM, STUDIES, Context, Study, budget_text, has, random_nets


def _corr(c) -> str:
    if c.n < 3 or math.isnan(c.value):
        return "-"
    return f"{c.value:+.3f} [{c.low:+.2f}, {c.high:+.2f}]"


def aggregates(ctx: Context) -> list[str]:
    """The aggregates the experiment's BlockSwap students are picked by (``rank_by``), if any."""
    m = ctx.spec.method("blockswap")
    names = m.options.rank_by if m is not None else ()
    return [r for r in names if len(parse_rank_by(r).components) > 1]


def _values(nets, name: str) -> list:
    return [n["params"] if name == "params" and "params" not in n["signals"] else n["signals"].get(name) for n in nets]


def top1(nets, name: str) -> dict:
    """The network `name` (a signal or an aggregate) ranks first among `nets`: its index and error."""
    values = {i: {**n["signals"], "params": n["params"]} for i, n in enumerate(nets)}
    order = parse_rank_by(name).order(values)
    return nets[order[0]]


def signals(ctx: Context) -> Section:
    tables, text, paper = [], [], ctx.paper
    for b in ctx.budgets:
        nets = random_nets(ctx.done, b)
        if len(nets) < 3:
            continue
        errors = [n["error"] for n in nets]
        names = list(nets[0]["signals"]) + ([] if "params" in nets[0]["signals"] else ["params"])
        theirs = (paper or {}).get("correlations", {}).get("budgets", {}).get(budget_label(b), {})
        best, median, worst = min(errors), statistics.median(errors), max(errors)
        rows = []
        for name in names + aggregates(ctx):
            if name in names:
                values = _values(nets, name)
            else:  # an aggregate: the mean rank, lower is better, so its signs read as error's
                agg = parse_rank_by(name)
                scores = agg.scores({i: {**n["signals"], "params": n["params"]} for i, n in enumerate(nets)})
                values = [-scores[i] for i in range(len(nets))]  # negated: "higher is better" like the rest
            k = correlation(values, errors, "kendall")
            s = correlation(values, errors, "spearman")
            pick = top1(nets, name)
            rows.append([name, _corr(k), _corr(s), k.n, f"{pick['error']:.2f}", f"{pick['error'] - best:+.2f}",
                         f"{theirs[name]:+.3f}" if name in theirs else "-"])
        tables.append(Table(["signal", "Kendall tau [95% CI]", "Spearman rho [95% CI]", "networks",
                             "error of its top-1 %", "regret (pp)", "paper (Table 1)"], rows,
                            caption=f"Budget {budget_text(b)}: {len(nets)} random networks; final error best "
                                    f"{best:.2f}%, median {median:.2f}%, worst {worst:.2f}%"))
    text.append("How well each signal, measured at initialisation (or after k minibatches of SGD, `@k`), predicts the "
                "final error of the random networks (paper Table 1). Signs are kept: a good signal for "
                "'higher is better' is negatively correlated with error. Intervals: percentile bootstrap over "
                "networks (2000 resamples). A network trained with several seeds counts with its mean error.")
    text.append("Top-1: the final error of the network the signal ranks first among the random networks, and its "
                "regret, how many points worse that is than the best of them (0 = the signal picked the best).")
    if aggregates(ctx):
        text.append("`mean_rank(...)`: each network's mean rank under the signals named (AZ-NAS, VKDNW), "
                    "lower is better; its correlations are of the negated mean rank, so they read like the others'.")
    if paper and "correlations" in paper:
        text.append(f"Paper column: {paper['correlations']['statistic']}; on {paper['dataset']}.")
    return Section("Ranking signals against final error (Table 1)", text, tables)


STUDIES.add("signals", Study("signals", has(RANDOM), signals, order=30))
