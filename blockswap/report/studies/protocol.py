"""Can the protocol resolve what it measures? The seed-to-seed noise of final error against
the spread of final error across random networks at each budget (issue: Fashion-MNIST
evidence). A study whose spread is not well above its noise cannot rank networks, whatever
the signal; the report states both before any table."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from ..document import Section, Table
from .base import RANDOM, STUDIES, Context, Study, budget_text

RESOLVES = 3.0  # the spread (std across networks) must be at least this many seed-noise stds


def net_of_seed_offsets(by_cand: dict[int, dict[int, float]]) -> dict | None:
    """The seed noise without each seed's common offset. Every network trained with seed s shares
    that seed's teacher (attention transfer), data order and augmentations, which move all of them
    together: an offset that cancels whenever networks trained with the same seeds are compared, as
    every table of the report compares them. The residual std of the additive model
    error = network + seed (two-way, no interaction; (n-1)(m-1) degrees of freedom), on the
    networks trained with every one of the seeds the repeated networks share."""
    repeated = [v for v in by_cand.values() if len(v) >= 2]
    seeds = sorted(set.intersection(*(set(v) for v in repeated))) if repeated else []
    if len(repeated) < 2 or len(seeds) < 2:
        return None
    x = [[v[s] for s in seeds] for v in repeated]
    n, m = len(x), len(seeds)
    grand = statistics.fmean(e for row in x for e in row)
    rows = [statistics.fmean(row) for row in x]
    cols = [statistics.fmean(x[i][j] for i in range(n)) for j in range(m)]
    ss = sum((x[i][j] - rows[i] - cols[j] + grand) ** 2 for i in range(n) for j in range(m))
    return {"noise": math.sqrt(ss / ((n - 1) * (m - 1))), "networks": n, "seeds": seeds,
            "offsets": {s: cols[j] - grand for j, s in enumerate(seeds)}}


def noise_and_spread(done, budget) -> dict:
    """Seed noise: the pooled within-network std of final error, over the random networks
    trained with two or more seeds (sqrt of the mean of their sample variances), and the same net
    of each seed's common offset (`net_of_seed_offsets`). Spread: the std of final error across
    random networks, one run each (the method's first seed)."""
    by_cand: dict[int, dict[int, float]] = defaultdict(dict)
    for r in done:
        if r["method"] == RANDOM and r["budget"] == budget.text:
            by_cand[r["detail"]["candidate"]][r["seed"]] = r["result"]["top1_error"]
    repeated = {c: list(v.values()) for c, v in by_cand.items() if len(v) >= 2}
    first_seed = min((s for v in by_cand.values() for s in v), default=None)
    single = [v[first_seed] for v in by_cand.values() if first_seed in v]
    noise = math.sqrt(statistics.fmean(statistics.variance(v) for v in repeated.values())) if repeated else None
    spread = statistics.stdev(single) if len(single) >= 2 else None
    out = {"noise": noise, "noise_networks": len(repeated),
           "noise_runs": sum(len(v) for v in repeated.values()), "spread": spread, "spread_networks": len(single),
           "range": (min(single), max(single)) if single else None,
           "ratio": spread / noise if noise and spread is not None else None, "mean_of": None}
    out["net"] = net = net_of_seed_offsets(by_cand)
    if net is not None:
        net["ratio"] = spread / net["noise"] if spread is not None and net["noise"] > 0 else None
    # Every network trained with the same m >= 2 seeds: Table 1 ranks their means, in which every
    # seed's offset is the same for every network, so their noise is the net noise / sqrt(m), and
    # their spread the std of the means.
    sets = {frozenset(v) for v in by_cand.values()}
    m = len(next(iter(sets))) if len(sets) == 1 else 0
    if m >= 2 and net is not None and net["noise"] > 0 and len(by_cand) >= 2:
        means = [statistics.fmean(v.values()) for v in by_cand.values()]
        out["mean_of"] = {"seeds": m, "noise": net["noise"] / math.sqrt(m), "spread": statistics.stdev(means),
                          "networks": len(means), "range": (min(means), max(means))}
        out["mean_of"]["ratio"] = out["mean_of"]["spread"] / out["mean_of"]["noise"]
    return out


def _fmt(x, digits=2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _verdict(ratio: float) -> str:
    return "resolves" if ratio >= RESOLVES else f"below {RESOLVES:g}x: differences are mostly noise"


def protocol(ctx: Context) -> Section:
    rows, offsets = [], []
    for b in ctx.budgets:
        m = noise_and_spread(ctx.done, b)
        if m["spread"] is None:
            continue
        verdict = "-" if m["ratio"] is None else _verdict(m["ratio"])
        # the one-seed spread, shown against the raw noise and against the net noise
        spread = [f"{_fmt(m['spread'])} ({m['spread_networks']} networks)",
                  "-" if m["range"] is None else f"{m['range'][0]:.2f} to {m['range'][1]:.2f}"]
        rows.append([budget_text(b), f"{_fmt(m['noise'])} ({m['noise_networks']} networks, {m['noise_runs']} runs)",
                     *spread, _fmt(m["ratio"], 1) + "x" if m["ratio"] is not None else "-", verdict])
        if (net := m["net"]) is not None and net["ratio"] is not None:
            rows.append([f"{budget_text(b)}, net of seed offsets",
                         f"{_fmt(net['noise'])} ({net['networks']} networks x {len(net['seeds'])} seeds)",
                         *spread, _fmt(net["ratio"], 1) + "x", _verdict(net["ratio"])])
            offsets.append(f"{budget_text(b)}: " + ", ".join(f"seed {s} {o:+.2f}"
                                                             for s, o in net["offsets"].items()))
        if (avg := m["mean_of"]) is not None:
            rows.append([f"{budget_text(b)}, mean of {avg['seeds']} seeds",
                         f"{_fmt(avg['noise'])} (net noise / sqrt({avg['seeds']}))",
                         f"{_fmt(avg['spread'])} ({avg['networks']} networks)",
                         f"{avg['range'][0]:.2f} to {avg['range'][1]:.2f}", _fmt(avg["ratio"], 1) + "x",
                         _verdict(avg["ratio"])])
    t = ctx.spec.student
    size = ctx.spec.input_size or "the network's default"
    text = [f"Students train {t.epochs} epochs" + (f" on a fixed {t.train_images:,} of the training images"
                                                   if t.train_images else "") +
            f" at {size} pixels. Seed noise: the standard deviation of final "
            "top-1 error between seeds of one network (pooled over the random networks trained with several "
            "seeds). Spread: the standard deviation of final error across random networks at the budget, one "
            f"seed each. A protocol resolves differences between networks when the spread is at least {RESOLVES:g} "
            "times the noise. Every network trained with seed s shares that seed's teacher, data order and "
            "augmentations, which shift all of them together; the shift cancels whenever networks trained "
            "with the same seeds are compared, as every table here compares them. The row 'net of seed "
            "offsets' removes it: the residual std of an additive network + seed model, on the networks "
            "trained with every shared seed. "
            "Where every random network trained with the same m seeds, a last row gives the same for their "
            "m-seed means, which Table 1 ranks."]
    if offsets:
        text.append("Seed offsets (a seed's mean error minus the grand mean, pp): " + "; ".join(offsets) + ".")
    return Section("Protocol: seed noise against the spread across networks", text,
                   [Table(["budget", "seed noise, std pp", "spread across networks, std pp", "error range %",
                           "spread / noise", "verdict"], rows)])


def _applies(rows) -> bool:
    seeds = defaultdict(set)
    for r in rows:
        if r["method"] == RANDOM:
            seeds[(r["budget"], r["detail"]["candidate"])].add(r["seed"])
    return any(len(s) >= 2 for s in seeds.values())


STUDIES.add("protocol", Study("protocol", _applies, protocol, order=5))
