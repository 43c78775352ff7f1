"""Scoring paths, the screened search, bf16 training and a profile: one run, side by side.

Prints the CPU and the torch build first (`machine.describe`), then one table per part; every
ratio is of figures measured in this run, under the same load:

1. scoring   seconds per candidate, build included, of the same students (WRN-40-2 at 800K,
             batch 128), the paths interleaved per candidate (their order rotated), the first
             candidate a warm-up: ``naive`` the authors' path (a DataLoader batch, a full
             ``loss.backward()``, tensor hooks: `search_speed.naive_fisher`), ``default``
             (`fisher_potential` on the search's `Scorer.build`: channels-last, exact BN) and
             ``bf16`` (the same with ``precision="bf16"``, the screened search's round one).
2. search    `run_search` on N candidates, exhaustive against screened (round one in bf16 on a
             quarter of the minibatch, the top --screen-keep rescored in float32), alternating,
             --search-repeats times each; wall seconds per candidate and whether the winners agree.
3. training  img/s of the bare training step: `train.classify.Classification.step` itself
             (forward under autocast, logits, attention maps and losses in float32, `at_loss`),
             then backward and an SGD step as `train.loop` does, for a WRN-16-2 teacher
             (cross-entropy) and a student of G(4) blocks distilled from it; float32 against
             bf16 autocast (``TrainConfig(amp=True)``) step by step. Skipped (one line) on a
             CPU without AVX512-BF16/AMX, where the trainer refuses bf16.
4. --profile `torch.profiler` over one default-path score end to end: the top operators by
             self CPU time, and the time in build, memory-format conversion, forward kernels,
             backward kernels (exact BN's share apart) and everything else.

Every timing comes with its spread over candidates, runs or steps (min-max and the coefficient
of variation, CV); a CV above 20% is marked "noisy machine": that row measures the load, not a
speed. Candidates differ in cost, so seconds per candidate spread by themselves; the
per-candidate ratios do not.

    python benchmarks/side_by_side.py
    python benchmarks/side_by_side.py --candidates 6 --search-samples 20 --train-steps 20 --profile
    python benchmarks/side_by_side.py --threads 1 --budget 200k --search-samples 100 --screen-keep 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from types import SimpleNamespace

import torch
from machine import describe
from paths import genotypes
from search_speed import naive_fisher
from torch.profiler import ProfilerActivity, record_function

from blockswap.data import load_split
from blockswap.proxies import fisher_potential
from blockswap.report import format_table
from blockswap.search import RunOptions, Scorer, SearchConfig, run_search, scoring_data
from blockswap.train.classify import Classification
from blockswap.train.config import recipe
from blockswap.train.evaluate import amp_dtype, cpu_has_bf16
from blockswap.train.models import init_model, parse_model

NOISY = 0.20  # CV above which a row is the machine's load, not a speed
CPU = torch.device("cpu")


def spread(values: list[float], digits: int = 3) -> list[str]:
    """[mean, min-max, CV, note] of one row's timings."""
    mean = statistics.mean(values)
    cv = statistics.pstdev(values) / mean if len(values) > 1 else 0.0
    return [f"{mean:.{digits}f}", f"{min(values):.{digits}f}-{max(values):.{digits}f}", f"{100 * cv:.0f}%",
            "noisy machine" if cv > NOISY else "ok"]


def ratio(a: list[float], b: list[float]) -> str:
    """Mean of the per-item ratios a_i / b_i with their min-max."""
    r = [x / y for x, y in zip(a, b)]
    return f"{statistics.mean(r):.2f}x ({min(r):.2f}-{max(r):.2f})"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def search_config(args, **kw) -> SearchConfig:
    return SearchConfig(model=args.model, budget=args.budget, data=args.data, batch_size=args.batch,
                        input_size=args.input_size, seed=args.seed, **kw)


def scorers(args):
    """(config, the search's channels-last scorer, a contiguous one for the naive path, x, y)."""
    config = search_config(args)
    data = scoring_data(config)
    scorer = Scorer(config, data, RunOptions(threads=args.threads))
    x, y = scorer.batches[0]
    return config, scorer, Scorer(config, data, RunOptions(memory_format="contiguous", threads=args.threads)), x, y


def scoring(args) -> dict[str, list[float]]:
    config, scorer, builder, x, y = scorers(args)
    split = load_split(args.data, "train", config.spec_input_size)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(split.images, split.labels),
                                         batch_size=args.batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    paths = {"naive": lambda g: naive_fisher(builder.build(g), iter(loader)),
             "default": lambda g: fisher_potential(scorer.build(g), x, y),
             "bf16": lambda g: fisher_potential(scorer.build(g), x, y, precision="bf16")}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for i, geno in enumerate(genotypes(args.model, args.budget, args.candidates + 1, args.seed)):
        names = list(paths)[i % 3:] + list(paths)[:i % 3]  # rotated: no path is always first
        for k in names:
            t = timed(lambda: paths[k](geno))
            if i > 0:  # the first candidate warms up oneDNN's primitive cache
                times[k].append(t)
    rows = [[k, *spread(v), ratio(times["naive"], v), ratio(v, times["default"])] for k, v in times.items()]
    print(f"\n1. scoring: {args.model} students at {args.budget}, batch {args.batch}, {config.spec_input_size} px, "
          f"{args.data}, {args.candidates} candidates (+1 warm-up); seconds per candidate, build included")
    print(format_table(rows, ["path", "s/cand", "min-max", "CV", "note", "naive / this", "this / default"],
                       align="lrrrlrr"))
    return times


def search(args) -> dict[str, list]:
    base = dict(samples=args.search_samples)
    configs = {"exhaustive": search_config(args, **base),
               "screened": search_config(args, **base, screen=True, screen_keep=args.screen_keep,
                                         screen_precision="bf16")}
    results: dict[str, list] = {k: [] for k in configs}
    for r in range(args.search_repeats):
        for name in (list(configs) if r % 2 == 0 else list(configs)[::-1]):
            with tempfile.TemporaryDirectory() as out:
                results[name].append(run_search(configs[name], out, run=RunOptions(threads=args.threads,
                                                                                   progress=False)))
    n = args.search_samples
    wall = {k: [res.seconds / n for res in v] for k, v in results.items()}
    rows = []
    for name, res in results.items():
        scoring_s = statistics.mean(x.timings["scoring"] / n for x in res)
        scored = f"{res[0].slice_scored} + {res[0].scored}" if name == "screened" else f"{res[0].scored}"
        rows.append([name, *spread(wall[name]), f"{scoring_s:.3f}", ratio(wall["exhaustive"], wall[name]), scored,
                     f"{res[0].score:.6g}", res[0].best.text[:36]])
    winners = {k: {x.best.text for x in v} for k, v in results.items()}
    same = "yes" if winners["exhaustive"] == winners["screened"] and len(winners["exhaustive"]) == 1 else "NO"
    print(f"\n2. search: run_search on {n} candidates, {args.search_repeats} run(s) each, alternating; "
          f"screened: bf16 on {configs['screened'].slice_size} of {args.batch}, top {configs['screened'].keep} rescored")
    print(format_table(rows, ["search", "wall s/cand", "min-max", "CV", "note", "scoring s/cand", "exh. / this",
                              "scored", "winner's Fisher", "winner"], align="lrrrlrrrrl"))
    print(f"screened winner == exhaustive winner: {same}")
    return {**wall, "same_winner": same == "yes"}


def stepper(desc, teacher, amp, seed: int):
    """One training step as `train.loop` runs it: `Classification.step` on a stand-in for its
    task object (what the step reads: cfg, mf, dev, amp_dtype, teacher, train_net), then
    zero_grad, backward and the SGD step of the loop's optimizer."""
    cfg = recipe("digits", amp=amp)
    net = init_model(desc, seed).train()
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    task = SimpleNamespace(cfg=cfg, mf=torch.preserve_format, dev=CPU, amp_dtype=amp_dtype(cfg.amp, CPU),
                           teacher=None if teacher is None else SimpleNamespace(net=teacher),
                           train_net=net.forward_intermediates)

    def step(batch) -> None:
        loss = Classification.step(task, batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def training(args) -> dict[str, dict[str, list[float]]] | None:
    if not cpu_has_bf16():
        print("\n3. training: this CPU has no AVX512-BF16/AMX instructions: bf16 autocast is unsupported "
              "(the trainer refuses --amp); bf16 columns skipped")
        return None
    split = load_split(args.data, "train", args.train_size)
    gen = torch.Generator().manual_seed(args.seed)
    batches = [split.sample(args.batch, gen) for _ in range(args.train_steps + 1)]
    t_desc = parse_model(args.train_model, num_classes=split.num_classes, input_size=args.train_size)
    teacher = init_model(t_desc, args.seed).eval().requires_grad_(False)  # frozen, as the trainer's
    s_desc = parse_model(args.train_model, ",".join([args.student_block] * len(teacher.blocks)),
                         split.num_classes, args.train_size)
    out, rows = {}, []
    for role, desc, t in (("teacher (CE)", t_desc, None), ("student (CE + AT)", s_desc, teacher)):
        steps = {"float32": stepper(desc, t, False, args.seed), "bf16": stepper(desc, t, True, args.seed)}
        ips: dict[str, list[float]] = {k: [] for k in steps}
        for i, batch in enumerate(batches):
            for k in (list(steps) if i % 2 == 0 else list(steps)[::-1]):
                dt = timed(lambda: steps[k](batch))
                if i > 0:  # step 0 is a warm-up
                    ips[k].append(args.batch / dt)
        out[role] = ips
        for k, v in ips.items():
            rows.append([role, k, *spread(v, 1), ratio(v, ips["float32"])])
    print(f"\n3. training: {args.train_model} on {args.data} at {args.train_size} px, batch {args.batch}, "
          f"{args.train_steps} steps (+1 warm-up), float32 and bf16 interleaved; student: "
          f"{args.student_block} blocks, AT from the teacher; images per second")
    print(format_table(rows, ["model", "precision", "img/s", "min-max", "CV", "note", "vs float32"], align="llrrrlr"))
    return out


def profile(args, top: int = 15) -> dict[str, float]:
    config, scorer, builder, x, y = scorers(args)
    genos = genotypes(args.model, args.budget, 2, args.seed)
    fisher_potential(scorer.build(genos[0]), x, y)  # warm-up: oneDNN's cache as in a running search
    stack: list = []
    with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        with record_function("build"):
            model = builder.build(genos[1])  # module construction + init (contiguous: no conversion)
        with record_function("memory_format"):
            model = model.to(memory_format=torch.channels_last)  # what `Scorer.build` adds
        model.forward = labelled(model.forward, "forward")  # an instance attribute, as exact BN's
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        hooks = [h for m in bns for h in (
            m.register_forward_pre_hook(lambda *_: stack.append(record_function("exact_bn").__enter__())),
            m.register_forward_hook(lambda *_: stack.pop().__exit__(None, None, None)))]
        with record_function("score"):
            fisher_potential(model, x, y)
        wall = 1e6 * (time.perf_counter() - t0)
    for h in hooks:
        h.remove()
    labels = {"build", "memory_format", "forward", "score", "exact_bn"}
    parts = dict.fromkeys(("build", "memory_format", "forward", "backward", "exact_bn"), 0.0)
    for ev in prof.events():
        if ev.name in ("build", "memory_format"):
            parts[ev.name] += ev.cpu_time_total
        chain, p = [], ev.cpu_parent
        while p is not None:
            chain.append(p.name)
            p = p.cpu_parent
        if ev.name in labels or "build" in chain or "memory_format" in chain:
            continue  # a label's self time is Python: "everything else"
        bwd = ev.name.startswith("autograd::engine") or any(c.startswith("autograd::engine") for c in chain)
        if bwd or "forward" in chain:
            parts["backward" if bwd else "forward"] += ev.self_cpu_time_total
            if "exact_bn" in chain or "ExactBatchNorm" in " ".join([ev.name, *chain]):
                parts["exact_bn"] += ev.self_cpu_time_total
    other = wall - sum(v for k, v in parts.items() if k != "exact_bn")
    names = {"build": "build (construction + init)", "memory_format": "memory-format conversion",
             "forward": "forward kernels", "backward": "backward kernels",
             "exact_bn": "  of which exact BN (fwd + bwd)"}
    rows = [[names[k], f"{v / 1e3:.1f}", f"{100 * v / wall:.1f}%"] for k, v in parts.items()]
    rows.append(["everything else (Python, allocator, loss, Fisher sums)", f"{other / 1e3:.1f}", f"{100 * other / wall:.1f}%"])
    rows.append(["total (wall, under the profiler)", f"{wall / 1e3:.1f}", "100.0%"])
    ops = sorted((e for e in prof.key_averages() if e.key not in labels), key=lambda e: -e.self_cpu_time_total)
    total_self = sum(e.self_cpu_time_total for e in prof.key_averages())
    op_rows = [[e.key[:60], e.count, f"{e.self_cpu_time_total / 1e3:.1f}", f"{100 * e.self_cpu_time_total / total_self:.1f}%"]
               for e in ops[:top]]
    print(f"\n4. profile: one {args.model} candidate's default-path score end to end ({genos[1][:40]}...)")
    print(format_table(op_rows, ["operator", "calls", "self CPU ms", "share"], align="lrrr"))
    print(format_table(rows, ["phase", "ms", "of wall"], align="lrr"))
    return {"wall": wall, "other": other, **parts}


def labelled(fn, name: str):
    """`fn` inside a profiler label `name`."""
    def run(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)
    return run


def parse_keep(text: str) -> float:
    value = float(text)
    return int(value) if value >= 1 else value


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="wrn-40-2")
    p.add_argument("--budget", default="800k")
    p.add_argument("--data", default="digits")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--input-size", type=int, default=None, help="scoring input side (default: the network's)")
    p.add_argument("--candidates", type=int, default=12, help="timed candidates (plus one warm-up)")
    p.add_argument("--search-samples", type=int, default=40)
    p.add_argument("--search-repeats", type=int, default=2)
    p.add_argument("--screen-keep", type=parse_keep, default=0.1, help="count, or fraction below 1")
    p.add_argument("--train-model", default="wrn-16-2")
    p.add_argument("--student-block", default="G(4)")
    p.add_argument("--train-size", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=30, help="timed steps per model and precision (plus one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe())
    print("load average %.2f %.2f %.2f before the run" % os.getloadavg())
    out = {"scoring": scoring(args), "search": search(args), "training": training(args)}
    if args.profile:
        out["profile"] = profile(args)
    return out


if __name__ == "__main__":
    main()
