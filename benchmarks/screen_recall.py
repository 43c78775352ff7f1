"""How often the screened search keeps the exhaustive winner (issue 19; docs/search.md,
"Screened search").

For every budget and search seed, N candidates (sampled as `blockswap search --seed S` samples
them) are scored once in each of four modes, on the same minibatch and the same initial weights:

    f32-full    float32, the whole minibatch: the exhaustive search's score (the paper's)
    f32-slice   float32, the first --slice of the minibatch (successive halving's round one)
    bf16-slice  bf16 autocast, the slice
    bf16-full   bf16 autocast, the whole minibatch

The modes of one candidate are scored one after another, so their times are side by side under
the same machine load. Every score goes to OUT/scores.sqlite as it is computed (resumable: a
rerun scores only what is missing). From the stored scores, for every screening mode and k, the
two-round winner is the best f32-full score among the top k of the screening mode (round two
rescores in float32 on the whole minibatch, which is exactly the f32-full score), and the table
gives: the fraction of seeds whose two-round winner is the exhaustive winner, the exhaustive
ranks of the winners otherwise, and the relative Fisher gap (F_best - F_winner) / F_best.

    python benchmarks/screen_recall.py --samples 300 --budgets 800k 200k --seeds 0 1 2 \\
        --data cifar10:PATH --out runs/screen-recall
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from machine import describe

from blockswap.report import format_table
from blockswap.search import RunOptions, Scorer, SearchConfig, sample_genotypes, scoring_data
from blockswap.seeding import derive_seed
from blockswap.space import CostTable

MODES = ("f32-full", "f32-slice", "bf16-slice", "bf16-full")
SCHEMA = """CREATE TABLE IF NOT EXISTS scores (
    budget TEXT NOT NULL, seed INTEGER NOT NULL, idx INTEGER NOT NULL, genotype TEXT NOT NULL,
    mode TEXT NOT NULL, slice REAL NOT NULL, score REAL, seconds REAL NOT NULL,
    PRIMARY KEY (budget, seed, idx, mode))"""


def mode_config(base: SearchConfig, mode: str, slice_: float) -> tuple[SearchConfig, str]:
    """(config, stage) that scores `mode`: f32-full is the exhaustive search's own stage."""
    if mode == "f32-full":
        return base, "full"
    precision = "float32" if mode.startswith("f32") else "bf16"
    fraction = slice_ if mode.endswith("slice") else 1.0
    return replace(base, screen=True, screen_slice=fraction, screen_precision=precision), "screen"


def candidates(config: SearchConfig, num_classes: int) -> list[str]:
    """The genotypes `run_search` samples for `config` (same sampler seed and cost table)."""
    spec = config.task.counted_spec(config.spec.with_classes(num_classes))
    table = CostTable(spec, config.candidates, config.spec_input_size)
    report = sample_genotypes(table, config.budget, config.samples, np.random.default_rng(derive_seed(config.seed, "sampler")))
    return [",".join(config.candidates[j].name for j in row) for row in report.choices]


def score_all(db: sqlite3.Connection, args: argparse.Namespace) -> None:
    run = RunOptions("local", threads=args.threads, progress=False)
    for budget in args.budgets:
        for seed in args.seeds:
            base = SearchConfig(model=args.model, budget=budget, data=args.data, samples=args.samples, seed=seed,
                                batch_size=args.batch_size)
            data = scoring_data(base)
            genos = candidates(base, data.num_classes)
            done = {(i, m) for i, m in db.execute("SELECT idx, mode FROM scores WHERE budget=? AND seed=?",
                                                  (budget, seed))}
            if len(done) >= len(genos) * len(MODES):
                continue
            scorers = {}
            for mode in MODES:
                cfg, stage = mode_config(base, mode, args.slice)
                scorers[mode] = (Scorer(cfg, data, run, args.threads), stage)
            started = time.perf_counter()
            for i, geno in enumerate(genos):
                for mode in MODES:
                    if (i, mode) in done:
                        continue
                    scorer, stage = scorers[mode]
                    row = scorer.score((i, geno, stage))
                    with db:
                        db.execute("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?)",
                                   (budget, seed, i, geno, mode, scorer.config.slice_size / base.batch_size
                                    if stage == "screen" else 1.0, row.score, row.seconds))
                print(f"\r{args.model} {budget} seed {seed}: {i + 1}/{len(genos)} candidates "
                      f"({time.perf_counter() - started:.0f} s)", end="", flush=True)
            print()


def load(db: sqlite3.Connection, budget: str, seed: int, samples: int) -> dict[str, dict[int, float]] | None:
    """{mode: {idx: score}} of one run, or None while a mode misses candidates."""
    out = {m: {} for m in MODES}
    for idx, mode, score in db.execute("SELECT idx, mode, score FROM scores WHERE budget=? AND seed=? AND idx<?",
                                       (budget, seed, samples)):
        out[mode][idx] = -np.inf if score is None else score  # a non-finite score ranks last, as `rank`
    return out if all(len(v) == samples for v in out.values()) else None


def two_round(exh: dict[int, float], screen: dict[int, float], k: int) -> tuple[int, float]:
    """(exhaustive rank of the two-round winner, 1 = the exhaustive winner; its relative Fisher gap)."""
    top = sorted(screen, key=lambda i: (-screen[i], i))[:k]  # ties by index, as `rank`
    winner = max(top, key=lambda i: (exh[i], -i))
    best = max(exh.values())
    return 1 + sum(v > exh[winner] for v in exh.values()), (best - exh[winner]) / best


def screen_rank_of_best(exh: dict[int, float], screen: dict[int, float]) -> int:
    """The smallest k whose two-round search keeps the exhaustive winner."""
    best = max(exh, key=lambda i: (exh[i], -i))
    return 1 + sum(v > screen[best] for v in screen.values())


def spearman(a: dict[int, float], b: dict[int, float]) -> float:
    """Rank correlation of two scorings of the same candidates (no ties expected in floats)."""
    keys = sorted(a)
    ra = np.argsort(np.argsort([a[i] for i in keys]))
    rb = np.argsort(np.argsort([b[i] for i in keys]))
    return float(np.corrcoef(ra, rb)[0, 1])


def report(db: sqlite3.Connection, args: argparse.Namespace) -> None:
    rows, time_rows, agree_rows = [], [], []
    for budget in args.budgets:
        runs = {s: load(db, budget, s, args.samples) for s in args.seeds}
        runs = {s: r for s, r in runs.items() if r is not None}
        if not runs:
            print(f"{budget}: no complete run yet")
            continue
        secs = {m: statistics.median(v for (v,) in db.execute(
            "SELECT seconds FROM scores WHERE budget=? AND mode=? AND idx<?", (budget, m, args.samples)))
            for m in MODES}
        for m in MODES:
            time_rows.append([budget, m, f"{secs[m]:.3f}", f"{secs['f32-full'] / secs[m]:.2f}x"])
        for mode in MODES[1:]:
            needed = [screen_rank_of_best(r["f32-full"], r[mode]) for r in runs.values()]
            rho = [spearman(r["f32-full"], r[mode]) for r in runs.values()]
            # A slice's Fisher is on another scale (its own N in 1/(2N) and in the mean loss): no relative diff.
            rel = "-" if mode.endswith("slice") else f"{statistics.mean(statistics.median(abs(r[mode][i] / r['f32-full'][i] - 1) for i in r[mode]) for r in runs.values()):.2e}"
            agree_rows.append([budget, mode, ",".join(map(str, needed)), f"{statistics.mean(rho):.4f}", rel])
            for k in args.ks:
                k = min(k, args.samples)
                results = [two_round(r["f32-full"], r[mode], k) for r in runs.values()]
                hits = sum(rank == 1 for rank, _ in results)
                misses = [str(rank) for rank, _ in results if rank != 1]
                gaps = [gap for _, gap in results]
                # Scoring time of the two rounds relative to the exhaustive search (median seconds).
                cost = (args.samples * secs[mode] + k * secs["f32-full"]) / (args.samples * secs["f32-full"])
                rows.append([budget, mode, k, f"{hits}/{len(results)}", ",".join(misses) or "-",
                             f"{statistics.mean(gaps):.2e}", f"{max(gaps):.2e}", f"{cost:.2f}"])
    print(f"{args.model}, N={args.samples} candidates, slice {args.slice} of a {args.batch_size or 128}-example "
          f"minibatch, data {args.data}, seeds {' '.join(map(str, args.seeds))}")
    print("median seconds per candidate (modes scored side by side):")
    print(format_table(time_rows, ["budget", "mode", "s/cand", "vs f32-full"], align="llrr"))
    print("agreement with f32-full (k needed: the exhaustive winner's rank in the screen, per seed):")
    print(format_table(agree_rows, ["budget", "screen", "k needed", "Spearman", "median |rel diff|"],
                       align="llrrr"))
    print("two-round winner vs the exhaustive winner:")
    print(format_table(rows, ["budget", "screen", "k", "kept winner", "ranks otherwise", "mean gap", "max gap",
                              "time vs exh."], align="llrrlrrr"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="wrn-40-2")
    p.add_argument("--budgets", nargs="+", default=["800k", "200k"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--data", default="digits")
    p.add_argument("--batch-size", type=int, default=None, help="default: the task's (128)")
    p.add_argument("--slice", type=float, default=SearchConfig.screen_slice)
    p.add_argument("--ks", type=int, nargs="+", default=[25, 50, 100, 200])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="runs/screen-recall")
    p.add_argument("--report-only", action="store_true", help="print the table from the stored scores")
    args = p.parse_args()
    print(describe())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(out / "scores.sqlite")
    db.execute(SCHEMA)
    try:
        if not args.report_only:
            score_all(db, args)
        report(db, args)
    finally:
        db.close()


if __name__ == "__main__":
    main()
