"""What good and bad networks look like (paper Sec. 4.4): block family frequencies per position
among the best and worst random networks."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ...experiments.runs import budget_label
from ...space.blocks import split_types
from ..document import Section
from ..figures import block_frequencies
from .base import RANDOM, STUDIES, Context, Study, budget_text, has, random_nets


def _family(block: str) -> str:
    return block.split("(")[0]


def good_bad(ctx: Context) -> Section:
    text, freqs = [], {}
    for b in ctx.budgets:
        nets = random_nets(ctx.done, b)
        if len(nets) < 4:
            continue
        errs = [n["error"] for n in nets]
        mean, std = statistics.fmean(errs), statistics.stdev(errs)
        good = [n for n in nets if n["error"] < mean - 2 * std]
        bad = [n for n in nets if n["error"] > mean + 2 * std]
        rule = "more than two standard deviations from the mean (the paper's rule)"
        if len(good) < 2 or len(bad) < 2:
            ordered = sorted(nets, key=lambda n: n["error"])
            q = max(1, len(nets) // 4)
            good, bad, rule = ordered[:q], ordered[-q:], ("the best and worst quarter (fewer than two networks lie "
                                                          "two standard deviations from the mean)")
        text.append(f"Budget {budget_text(b)}: good and bad are {rule}: {len(good)} and {len(bad)} of {len(nets)} networks.")
        for name, group in (("good", good), ("bad", bad)):
            per_pos: dict[int, dict[str, float]] = {}
            for n in group:
                for pos, block in enumerate(split_types(n["genotype"], "genotype")):
                    per_pos.setdefault(pos, defaultdict(float))[_family(block)] += 1 / len(group)
            freqs[f"{budget_label(b)} {name}"] = {p: dict(v) for p, v in per_pos.items()}
    if not text:
        text.append("Too few random networks per budget (fewer than 4) to tell good from bad ones.")
    images = []
    if freqs:
        block_frequencies(freqs, Path(ctx.out) / "block_frequencies.png")
        images.append(("block_frequencies.png", "Block family frequency per position among good and bad random "
                                                "networks (paper Sec. 4.4)"))
    return Section("What good and bad networks look like (Sec. 4.4)", text, [], images)


STUDIES.add("good-bad", Study("good-bad", has(RANDOM), good_bad, order=50))
