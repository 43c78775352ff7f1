"""Where the search's time goes: scoring paths measured side by side on the same candidates.

For each candidate (WRN-40-2 students at 800K by default, batch 128), interleaved so that load
on a shared machine hits every path alike:

* forward     a plain forward pass (contiguous memory format, train-mode BN, no autograd): the floor
* naive       what the authors' code does: a fresh batch from a torch DataLoader, a full
              ``loss.backward()`` with weight gradients, Fisher read at the probes by tensor hooks
* contiguous  `fisher_potential(memory_format="contiguous")`: gradients to the probes only (exact)
* cl-native   channels-last with PyTorch's own BN (0.1's default; inexact statistics)
* ours        `fisher_potential` as the search runs it: channels-last, exact BN (the default)

plus building the candidate (module construction + the authors' init), which every path pays.
Prints seconds per candidate and the ratios to the forward pass and to the naive path.

``--memory N`` scores N candidates through the search's `Scorer` and prints the resident memory
every N/10 candidates (flat means nothing leaks across candidates). ``--executors N`` compares
worker processes (1 x 2 threads, 1 x 1, 2 x 1; start-up included) and the in-process scorer.

    python benchmarks/search_speed.py --candidates 20
    python benchmarks/search_speed.py --memory 1000
    python benchmarks/search_speed.py --executors 60
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from machine import describe
from paths import genotypes, naive, probes

from blockswap.data import load_split
from blockswap.proxies import fisher_potential
from blockswap.report import format_table
from blockswap.search import RunOptions, Scorer, ScoringData, SearchConfig, run_search
from blockswap.space import network_spec


def naive_fisher(model, loader_iter) -> float:
    """The authors' path, with a fresh batch from a torch DataLoader as their code draws it."""
    x, y = next(loader_iter)
    return float(naive(model, (x.float() / 255 - 0.5) / 0.25, y).sum())


def native_channels_last(model, x, y) -> float:
    """0.1's path: channels-last with PyTorch's own train-mode BN."""
    return float(probes(model, x, y).sum())


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare(args) -> None:
    config = SearchConfig(model=args.model, budget=args.budget, data=args.data, batch_size=args.batch)
    split = load_split(args.data, "train", network_spec(args.model).input_size)
    x, y = split.sample(args.batch, torch.Generator().manual_seed(0))
    xcl = x.contiguous(memory_format=torch.channels_last)
    dataset = torch.utils.data.TensorDataset(split.images, split.labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    data = ScoringData(((x.numpy(), y.numpy()),), split.num_classes)
    scorer = Scorer(config, data, RunOptions(memory_format="channels_last"))
    builder = Scorer(config, data, RunOptions(memory_format="contiguous"))
    paths = ("forward", "naive", "contiguous", "cl-native", "ours")
    times: dict[str, list[float]] = {k: [] for k in ("build", *paths)}
    genos = genotypes(args.model, args.budget, args.candidates + 1, args.seed)
    for i, geno in enumerate(genos):
        t = {}
        t["build"] = timed(lambda: builder.build(geno))
        m = builder.build(geno).train()

        def forward():
            with torch.no_grad():
                m(x)

        t["forward"] = timed(forward)
        t["naive"] = timed(lambda: naive_fisher(builder.build(geno), iter(loader))) - t["build"]
        t["contiguous"] = timed(lambda: fisher_potential(builder.build(geno), x, y,
                                                         memory_format="contiguous")) - t["build"]
        t["cl-native"] = timed(lambda: native_channels_last(scorer.build(geno), xcl, y)) - t["build"]
        t["ours"] = timed(lambda: fisher_potential(scorer.build(geno), xcl, y)) - t["build"]
        if i > 0:  # the first candidate warms up oneDNN's primitive cache
            for k, v in t.items():
                times[k].append(v)
    mean = {k: statistics.mean(v) for k, v in times.items()}
    rows = []
    for k in paths:
        per = mean[k] + mean["build"]
        rows.append([k, f"{mean[k]:.3f}", f"{per:.3f}", f"{mean[k] / mean['forward']:.2f}x",
                     f"{(mean['naive'] + mean['build']) / per:.2f}x"])
    print(describe())
    print(f"{args.model} students at {args.budget}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{len(times['build'])} candidates; build {mean['build'] * 1000:.0f} ms per candidate")
    print(format_table(rows, ["path", "s scoring", "s per candidate (+build)", "vs forward", "naive / this"],
                       align="lrrrr"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory(args) -> None:
    print(describe())
    config = SearchConfig(model=args.model, budget=args.budget, data=args.data, batch_size=args.batch)
    split = load_split(args.data, "train", network_spec(args.model).input_size)
    x, y = split.sample(args.batch, torch.Generator().manual_seed(0))
    scorer = Scorer(config, ScoringData(((x.numpy(), y.numpy()),), split.num_classes))
    genos = genotypes(args.model, args.budget, args.memory, args.seed)
    every = max(1, args.memory // 10)
    t0 = time.perf_counter()
    for i, geno in enumerate(genos, start=1):
        scorer.score((i, geno, "full"))
        if i % every == 0 or i == 1:
            print(f"{i:5d} candidates  RSS {rss_mb():7.1f} MB  {(time.perf_counter() - t0) / i:.3f} s/candidate",
                  flush=True)


def executors(args) -> None:
    config = SearchConfig(model=args.model, budget=args.budget, data=args.data, batch_size=args.batch,
                          samples=args.executors, seed=args.seed)
    print(describe())
    rows = []
    for label, run in (("1 process x 2 threads", RunOptions("process", threads=2, progress=False)),
                       ("1 process x 1 thread", RunOptions("process", threads=1, progress=False)),
                       ("2 processes x 1 thread", RunOptions("process", workers=2, threads=1, progress=False)),
                       ("in-process, 2 threads", RunOptions("local", threads=2, progress=False))):
        with tempfile.TemporaryDirectory() as out:
            result = run_search(config, out, run=run)
        rows.append([label, f"{result.timings['scoring']:.1f}", f"{result.timings['scoring'] / args.executors:.3f}",
                     result.best.text[:40]])
    print(f"{args.executors} {args.model} candidates at {args.budget}, batch {args.batch}:")
    print(format_table(rows, ["executor", "s scoring", "s per candidate", "winner"], align="lrrl"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="wrn-40-2")
    p.add_argument("--budget", default="800k")
    p.add_argument("--data", default="digits")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory", type=int, default=0, help="score this many candidates, printing RSS")
    p.add_argument("--executors", type=int, default=0, help="compare executors on this many candidates")
    args = p.parse_args()
    if args.memory:
        memory(args)
    elif args.executors:
        executors(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
