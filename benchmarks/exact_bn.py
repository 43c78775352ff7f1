"""Exact batch norm in channels-last: accuracy against float64 and speed, side by side.

For random WRN-40-2 students at 800K parameters (batch 128) this prints:

1. the machine (CPU model, torch build, threads) and the load average (the cores may be shared);
2. ACCURACY: per candidate, the largest relative per-block error of the Fisher potential against
   the same computation in float64 (model.double(), input.double()), for each BN path; once with
   the networks' ReLUs and once with every ReLU replaced by softplus(beta=5). In float32 some
   ReLU inputs within rounding of 0 change sign (~400 of 1.3e8 in a WRN-40-2), each moving one
   gradient entry by its full size: ~1e-3 per block whatever BN does. The smooth network shows
   what BN alone contributes;
3. SPEED: seconds per candidate (median over candidates of the median over repeats), paths
   interleaved candidate by candidate so that load hits all alike, at each thread count.

    python benchmarks/exact_bn.py                      # 8 candidates, 3 repeats, 2 then 1 threads
    python benchmarks/exact_bn.py --candidates 4 --repeats 2 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from machine import describe
from paths import genotypes, naive, probes

import blockswap
from blockswap.nn import exact_bn as nn_exact_bn
from blockswap.nn.exact_bn import exact_batch_norm

CL = torch.channels_last


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def candidates(n: int, seed: int) -> list[str]:
    """The paper's reference 800K student, then random students within 800K +- 2.5%."""
    return [blockswap.load_genotype("reference:bs800k").text] + genotypes("wrn-40-2", "800k", n - 1, seed)


# ---- alternative BN paths (measured, not recommended) ----------------------------------------

@contextlib.contextmanager
def patched_bn(model: nn.Module, forward):
    """Every BatchNorm2d of `model` runs forward(bn, x) within the block."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.forward = functools.partial(forward, bn)
    try:
        yield model
    finally:
        for bn in bns:
            del bn.forward


def bn_via_contiguous(bn, x, dtype=None):
    """Native BN on a contiguous (optionally float64) copy, the result back to channels-last."""
    xc = x.contiguous().to(dtype or x.dtype)
    w, b = (None if t is None else t.to(xc.dtype) for t in (bn.weight, bn.bias))
    y = F.batch_norm(xc, None, None, w, b, True, bn.momentum, bn.eps)  # (running stats skipped)
    return y.to(x.dtype).contiguous(memory_format=CL)


@contextlib.contextmanager
def stats_variant(name: str):
    """nn.exact_bn with its batch statistics computed another way (its folded backward kept)."""
    def welford(x):  # torch.var_mean: float32 Welford, accurate but slow
        var, mean = torch.var_mean(x, (0, 2, 3), unbiased=False)
        return mean.double(), var.double()

    def planes(x):  # float32 sums per image plane, planes in float64; var by a fused mse_loss pass
        n = x.numel() // x.shape[1]
        mean = x.sum((2, 3)).double().sum(0) / n
        sq = F.mse_loss(x, mean.float().view(1, -1, 1, 1).expand_as(x), reduction="none")
        return mean, sq.sum((2, 3)).double().sum(0) / n

    def native_var(x):  # exact mean, the native kernel's variance: as wrong as the native BN
        _, var = torch.batch_norm_update_stats(x, None, None, 0.0)
        return x.sum((2, 3)).double().sum(0) / (x.numel() // x.shape[1]), var.double()

    saved = nn_exact_bn.batch_stats
    nn_exact_bn.batch_stats = {"welford": welford, "planes": planes, "native_var": native_var}[name]
    try:
        yield
    finally:
        nn_exact_bn.batch_stats = saved


# ---- the paths ------------------------------------------------------------------------------

def forward(model, x, y):
    with torch.no_grad():
        model.train()(x)


def path(fn, cl=False, bn=None):
    """A path: fn on a fresh copy of the model, in channels-last if cl, with a BN patch."""
    def run(model, x, y):
        xx = x.contiguous(memory_format=CL) if cl else x
        m = model.to(memory_format=CL) if cl else model
        if bn is None:
            ctx = contextlib.nullcontext()
        elif callable(bn):
            ctx = patched_bn(m, bn)
        elif bn in ("welford", "planes", "native_var"):
            ctx = contextlib.ExitStack()
            ctx.enter_context(stats_variant(bn))
            ctx.enter_context(exact_batch_norm(m))
        else:
            ctx = exact_batch_norm(m, backward=bn)
        with ctx:
            return fn(m, xx, y)
    return run


ACCURACY = {
    "contiguous, native BN": path(probes),
    "contiguous, exact BN": path(probes, bn="exact"),
    "channels-last, native BN": path(probes, cl=True),
    "channels-last, exact BN (ours)": path(probes, cl=True, bn="exact"),
    "channels-last, exact stats + native BN backward": path(probes, cl=True, bn="native"),
    "channels-last, exact mean + native variance": path(probes, cl=True, bn="native_var"),
    "channels-last, BN in float64": path(probes, cl=True, bn=functools.partial(
        bn_via_contiguous, dtype=torch.float64)),
}
SPEED = {
    "forward (contiguous, no grad)": path(forward),
    "naive (contiguous, loss.backward())": path(naive),
    "probes, contiguous, native BN": path(probes),
    "probes, channels-last, native BN": path(probes, cl=True),
    "probes, channels-last, exact BN (ours)": path(probes, cl=True, bn="exact"),
    "probes, channels-last, exact stats + native backward": path(probes, cl=True, bn="native"),
    "probes, channels-last, plane-sum + mse_loss stats": path(probes, cl=True, bn="planes"),
    "probes, channels-last, Welford stats (var_mean)": path(probes, cl=True, bn="welford"),
    "probes, channels-last, BN on a contiguous copy": path(probes, cl=True, bn=bn_via_contiguous),
    "probes, channels-last, BN in float64": path(probes, cl=True, bn=functools.partial(
        bn_via_contiguous, dtype=torch.float64)),
}


def smooth(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.forward = functools.partial(F.softplus, beta=5.0)
    return model


def build(genotype: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return blockswap.build_model("wrn-40-2", genotype).train()


def accuracy(genos, x, y, seed) -> None:
    for act in ("relu", "softplus"):
        errors = {k: [] for k in ACCURACY}
        for geno in genos:
            prep = smooth if act == "softplus" else (lambda m: m)
            base = prep(build(geno, seed))
            ref = probes(copy.deepcopy(base).double(), x.double(), y)
            for name, fn in ACCURACY.items():
                errors[name].append(float(np.max(np.abs(fn(copy.deepcopy(base), x, y) / ref - 1))))
        print(f"\nACCURACY ({act}): max over blocks of |Fisher / Fisher_float64 - 1|, {len(genos)} candidates")
        print(f"{'path':52s} {'median':>9s} {'max':>9s}")
        for name, v in errors.items():
            print(f"{name:52s} {statistics.median(v):9.1e} {max(v):9.1e}")


def speed(genos, x, y, seed, repeats: int) -> None:
    print(f"\nSPEED at {torch.get_num_threads()} threads ({load()} at start)")
    times = {k: [[] for _ in genos] for k in SPEED}
    models = [build(g, seed) for g in genos]
    for fn in SPEED.values():  # warm up (oneDNN primitive cache, allocator): not counted
        fn(copy.deepcopy(models[0]), x, y)
    for _ in range(repeats):
        for i, model in enumerate(models):
            for name, fn in SPEED.items():
                m = copy.deepcopy(model)
                t0 = time.perf_counter()
                fn(m, x, y)
                times[name][i].append(time.perf_counter() - t0)
    per = {k: statistics.median(statistics.median(c) for c in v) for k, v in times.items()}
    fwd, nv = per["forward (contiguous, no grad)"], per["naive (contiguous, loss.backward())"]
    print(f"{'path':56s} {'s/cand':>7s} {'/forward':>9s} {'naive/this':>10s}")
    for name, s in per.items():
        print(f"{name:56s} {s:7.3f} {s / fwd:8.2f}x {nv / s:9.2f}x")
    print(f"({load()} at end; {repeats} repeats x {len(genos)} candidates)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="2,1", help="comma-separated thread counts to time")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--data", default="digits", help="a blockswap data spec; 'randn' for N(0,1) images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-accuracy", action="store_true")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(threads[0])
    print(describe())
    print(load())
    gen = torch.Generator().manual_seed(args.seed)
    if args.data == "randn":
        x, y = torch.randn(args.batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (args.batch,), generator=gen)
    else:
        x, y = blockswap.load_split(args.data, "train", 32).sample(args.batch, gen)
        x = x.float()
    genos = candidates(args.candidates, args.seed)
    print(f"{len(genos)} wrn-40-2 candidates at 800K, batch {args.batch} of {args.data}; first: {genos[0]}")
    if not args.skip_accuracy:
        accuracy(genos, x, y, args.seed)
    for t in threads:
        torch.set_num_threads(t)
        speed(genos, x, y, args.seed, args.repeats)


if __name__ == "__main__":
    main()
