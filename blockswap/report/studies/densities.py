"""Single vs random mixed blocktypes (paper Figure 2, Sec. 4.1): the final errors of the random
networks of each budget against the single-blocktype and BlockSwap students of that budget."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ...experiments.runs import budget_label
from ..document import Section, Table
from ..figures import error_densities
from .base import RANDOM, STUDIES, Context, Study, has, label, mean_std, random_nets

LINES = ("single", "blockswap")  # the paper's Figure 2 draws these students as lines over the densities


def densities(ctx: Context) -> Section:
    random_errors, lines = {}, {}
    for b in ctx.budgets:
        nets = random_nets(ctx.done, b)
        if not nets:
            continue
        random_errors[budget_label(b)] = [n["error"] for n in nets]
        ref = defaultdict(list)
        for r in ctx.done:
            if r["budget"] == b.text and r["method"] in LINES:
                ref[label(r)].append(r["result"]["top1_error"])
        lines[budget_label(b)] = {k: statistics.fmean(v) for k, v in ref.items()}
    error_densities(random_errors, lines, Path(ctx.out) / "densities.png")
    rows = []
    for key, errs in random_errors.items():
        mean, std = mean_std(errs)
        for name, e in sorted(lines[key].items()):
            below = sum(x < e for x in errs)
            rows.append([key, name, f"{e:.2f}", f"{mean:.2f} +- {std or 0:.2f}", f"{below} of {len(errs)}"])
    return Section("Single vs random mixed blocktypes (Figure 2)",
                   ["Final errors of the random mixed-blocktype networks (densities) against the single-blocktype "
                    "and BlockSwap students of the same budget (vertical lines: BlockSwap solid red, single-blocktype grey dashed). The last column counts random networks "
                    "that beat each line."],
                   [Table(["budget", "student", "error %", "random networks: mean +- std %", "random below it"], rows)],
                   [("densities.png", "Final error of random mixed-blocktype networks per budget (paper Figure 2)")])


STUDIES.add("densities", Study("densities", has(RANDOM), densities, order=20))
