"""Successive halving against the faithful search, over several seeds.

For each seed: the faithful search (every candidate on the whole minibatch) and the halving
search (every candidate on a slice of the minibatch, the top fraction rescored on the whole
minibatch), on the same candidates. Reports whether halving picks the same winner, its winner's
whole-minibatch Fisher relative to the faithful best, and the scoring speed-up.

Runs are kept in ``--workdir`` and resumed, so an interrupted study continues and a finished
one is reprinted at once (a faithful run made elsewhere can be linked in as faithful-s<seed>).

    python benchmarks/search_halving.py --samples 200 --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from machine import describe

from blockswap.report import format_table
from blockswap.search import RunOptions, SearchConfig, default_workers, run_search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="wrn-40-2")
    p.add_argument("--budget", default="800k")
    p.add_argument("--data", default="digits")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--slice", type=float, default=SearchConfig.halving_slice)
    p.add_argument("--keep", type=float, default=SearchConfig.halving_keep)
    p.add_argument("--workdir", default="runs/halving-study")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    print(describe())
    run = RunOptions("process", workers=default_workers(), threads=args.threads, progress=True)  # as the CLI
    rows, same, rel, speed = [], [], [], []
    for seed in args.seeds:
        base = dict(model=args.model, budget=args.budget, data=args.data, samples=args.samples, seed=seed)
        faithful = run_search(SearchConfig(**base), Path(args.workdir) / f"faithful-s{seed}", resume=True, run=run)
        halving = run_search(SearchConfig(**base, halving=True, halving_slice=args.slice, halving_keep=args.keep),
                             Path(args.workdir) / f"halving-s{seed}-{args.slice}-{args.keep}", resume=True, run=run)
        # Scoring seconds summed over candidates: comparable even when a run was resumed.
        t_f = faithful.timings["candidate_seconds_sum"]
        t_h = halving.timings["candidate_seconds_sum"]
        same.append(halving.best == faithful.best)
        rel.append(halving.score / faithful.score)
        speed.append(t_f / t_h)
        rows.append([seed, "yes" if same[-1] else "no", f"{rel[-1]:.4f}", f"{t_f:.0f}", f"{t_h:.0f}", f"{speed[-1]:.2f}x"])
    print(f"{args.model} at {args.budget}, {args.samples} samples, slice {args.slice}, keep {args.keep}:")
    print(format_table(rows, ["seed", "same winner", "Fisher vs best", "s faithful", "s halving", "speed-up"],
                       align="rlrrrr"))
    print(f"same winner {sum(same)}/{len(same)}; winner's Fisher vs faithful best: min {min(rel):.4f}, "
          f"mean {statistics.mean(rel):.4f}; speed-up mean {statistics.mean(speed):.2f}x")


if __name__ == "__main__":
    main()
