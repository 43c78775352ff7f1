"""Samples needed (paper Sec. 4.3): the final error of the best-ranked of the first n samples,
from the trained BlockSwap students and from the trained random networks."""

from __future__ import annotations

from collections import defaultdict

from ..document import Section, Table
from ..stats import best_of_first
from .base import STUDIES, Context, Study, best_of_rows, budget_text, err, mean_std, random_nets


def samples(ctx: Context) -> Section:
    rows = []
    for b in ctx.budgets:
        by_n = defaultdict(list)
        for r in best_of_rows(ctx.done):
            if r["budget"] == b.text and not r["detail"].get("rank_by"):  # Fisher-picked: the paper's curve
                by_n[(r["detail"].get("candidates") or "", r["detail"]["best_of"])].append(r["result"]["top1_error"])
        nets = random_nets(ctx.done, b)
        ranked = [n for n in nets if n["signals"].get("fisher") is not None]
        best = best_of_first([n["signals"]["fisher"] for n in ranked], [n["error"] for n in ranked],
                             [n for n in (5, 10, 20, 40, 100) if n <= len(ranked)]) if ranked else {}
        for series, n in sorted(by_n):
            rows.append([budget_text(b), n, err(*mean_std(by_n[series, n]), len(by_n[series, n])),
                         f"trained BlockSwap student{' (candidates ' + series + ')' if series else ''}"])
        for n, e in sorted(best.items()):
            rows.append([budget_text(b), n, f"{e:.2f}", "best Fisher of the first n trained random networks"])
    return Section("Samples needed (Sec. 4.3)",
                   ["The final error of the best-ranked network (highest Fisher potential) among the first n "
                    "samples. The paper's own figures for this study are not transcribed into experiments/paper.json."],
                   [Table(["budget", "samples n", "top-1 error %", "from"], rows)])


STUDIES.add("samples", Study("samples", lambda rows: bool(best_of_rows(rows)), samples, order=40))
