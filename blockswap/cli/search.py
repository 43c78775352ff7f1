"""``blockswap search``: sample students under a budget and keep the one with the highest Fisher potential."""

from __future__ import annotations

import argparse
import sys

from ..files import dumps
from ..proxies import PROXIES
from ..proxies.execution import PRECISIONS
from ..report.table import format_table
from ..search import EXECUTORS, RunOptions, SearchConfig, default_workers, run_search
from ..space.budget import format_count
from ..space.latency import load_latency_table
from ..space.refs import is_torchvision
from ..tasks import TASKS
from .common import (DATA_HELP, DEVICE_HELP, OVERWRITE_HELP, QUIET_HELP, TORCHVISION_WEIGHTS_HELP, default_device,
                     non_negative, positive)

_D = SearchConfig()
_R = RunOptions()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="find the student with the highest Fisher potential within a budget",
        description="Rejection-sample genotypes within a parameter or MAC budget, score each at "
                    "initialisation with one minibatch (Fisher potential, paper Sec. 4), keep the best. "
                    "Every score is saved to DIR/results.sqlite as it is computed; --resume continues.")
    p.add_argument("--model", default=_D.model, help=f"network to shrink (default {_D.model})")
    p.add_argument("--budget", default="800k",
                   help="parameters ('800k'), MACs per image ('macs=90M') or predicted latency "
                        "('latency=12ms', with --latency-table) (default 800k)")
    p.add_argument("--latency-table", default=None,
                   help="latency table for --budget latency=12ms (from `blockswap latency-table`)")
    p.add_argument("--tolerance", type=float, default=_D.budget.tolerance,
                   help=f"relative budget window, accept budget*(1+-t) (default {_D.budget.tolerance})")
    p.add_argument("--candidates", default=None,
                   help="comma-separated block types (default: the paper's 23 CIFAR candidates)")
    p.add_argument("--samples", type=positive, default=_D.samples, help=f"genotypes to score (default {_D.samples})")
    p.add_argument("--data", required=True,
                   help=DATA_HELP)
    p.add_argument("--out", required=True, help="output folder (results.sqlite, winner.json, ...)")
    p.add_argument("--seed", type=non_negative, default=_D.seed, help=f"run seed (default {_D.seed})")
    p.add_argument("--resume", action="store_true", help="continue the search in --out without re-scoring")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--batch-size", type=positive, default=None,
                   help="Fisher minibatch size = training batch size (default: the task's, "
                        + "; ".join(f"{t.name} {t.batch_size}" for t in TASKS.values()) + ")")
    p.add_argument("--task", default=_D.task.name, choices=TASKS.names(),
                   help="; ".join(f"{t.name}: {t.help}" for t in TASKS.values()) + f" (default {_D.task.name})")
    p.add_argument("--signals", default="fisher",
                   help="comma-separated signals to record, the first ranks (default fisher); "
                        f"one of {', '.join(PROXIES)}, training ones as name@k")
    p.add_argument("--rank-by", default=None,
                   help="what ranks the candidates: a signal (fisher, macs, snip, ...) or an aggregate "
                        "such as 'mean_rank(fisher,macs,synflow)' (mean of the candidates' ranks); its "
                        "signals are recorded too (default: the first of --signals, fisher)")
    p.add_argument("--augment", action="store_true", help="draw the minibatch with training augmentation")
    p.add_argument("--input-size", type=positive, default=None, help="input side in pixels (default: the model's; "
                                                                         "detection: the detector's shorter side, 800)")
    p.add_argument("--halving", action="store_true",
                   help="successive halving: rank all on a slice of the minibatch, rescore the top fraction")
    p.add_argument("--halving-slice", type=float, default=_D.halving_slice,
                   help=f"fraction of the minibatch in the first round (default {_D.halving_slice})")
    p.add_argument("--halving-keep", type=float, default=_D.halving_keep,
                   help=f"fraction of candidates rescored on the whole minibatch (default {_D.halving_keep})")
    p.add_argument("--screen", action="store_true",
                   help="screened search: rank all on a slice (optionally bf16), rescore the top k in float32 "
                        "on the whole minibatch; the best rescore wins (docs/search.md)")
    p.add_argument("--screen-keep", type=_count_or_fraction, default=_D.screen_keep,
                   help=f"candidates rescored in round two: a count, or a fraction below 1 (default {_D.screen_keep})")
    p.add_argument("--screen-slice", type=float, default=_D.screen_slice,
                   help=f"fraction of the minibatch in round one, 1 = all (default {_D.screen_slice})")
    p.add_argument("--screen-precision", default=_D.screen_precision, choices=list(PRECISIONS),
                   help=f"arithmetic of round one (default {_D.screen_precision}; bf16 is approximate)")
    # Not --checkpoint: elsewhere that names a trained run to load (issue 20, one name one meaning).
    p.add_argument("--grad-checkpoint", action="store_true",
                   help="gradient checkpointing: recompute blocks in the backward pass, less memory, "
                        "identical value (default off)")
    p.add_argument("--micro-batch", type=positive, default=None,
                   help="push the minibatch in chunks of this size (APPROXIMATE: BN statistics per chunk)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="score in the contiguous memory format (the same values, slower on CPU)")
    # The CLI scores in worker processes: their OpenMP threads can be tuned for shared cores
    # (search.executors.WORKER_ENV), which this already-started process cannot.
    p.add_argument("--executor", default="process",
                   help=f"where candidates are scored: {', '.join(EXECUTORS)} (default process)")
    p.add_argument("--score-workers", type=positive, default=None,
                   help=f"scoring processes or Ray actors (default: one per usable core, at most 4, here "
                        f"{default_workers()}; 1 with --executor local)")
    p.add_argument("--address", default=None, help="Ray cluster address (with --executor ray; default: local Ray)")
    p.add_argument("--threads", type=positive, default=None,
                   help="torch threads per scorer (default: the cores divided among the workers)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--top-k", type=positive, default=_R.top_k, help=f"runner-ups to keep and show (default {_R.top_k})")
    p.add_argument("--teacher-weights", default=None,
                   help="with --model torchvision:NAME: " + TORCHVISION_WEIGHTS_HELP + "; its classes must be the data's")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = SearchConfig(
        model=args.model, budget=args.budget, tolerance=args.tolerance, candidates=args.candidates,
        samples=args.samples, data=args.data, seed=args.seed, task=args.task, batch_size=args.batch_size,
        signals=tuple(s for s in args.signals.split(",") if s.strip()), rank_by=args.rank_by, augment=args.augment,
        input_size=args.input_size, halving=args.halving, halving_slice=args.halving_slice,
        halving_keep=args.halving_keep, screen=args.screen, screen_keep=args.screen_keep,
        screen_slice=args.screen_slice, screen_precision=args.screen_precision, micro_batch=args.micro_batch, latency_table=args.latency_table,
        latency=None if args.latency_table is None else load_latency_table(args.latency_table))
    if args.teacher_weights is not None:
        _check_teacher_classes(args.teacher_weights, config)
    workers = args.score_workers if args.score_workers is not None else (
        default_workers() if args.executor != "local" else 1)
    options = RunOptions(executor=args.executor, workers=workers, address=args.address,
                         threads=args.threads, device=default_device(args.device),
                         progress=not (args.quiet or args.json), top_k=args.top_k, checkpoint=args.grad_checkpoint,
                         memory_format="channels_last" if args.channels_last else "contiguous")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    result = run_search(config, args.out, resume=args.resume, overwrite=args.overwrite, run=options, log=log)
    if args.json:
        print(dumps(result.summary()))
        return 0
    if args.quiet:  # the results are in --out (winner.json, top.json)
        return 0
    s = result.sampling
    if config.first_stage is not None:
        scored = (f"{result.slice_scored} ranked on {config.slice_size} examples in {config.first_precision} "
                  f"({result.slice_scored_now} now), "
                  f"the top {result.scored} rescored on {config.batch_size} ({result.scored_now} now)")
    else:
        scored = f"{result.scored} scored ({result.scored_now} now)"
    print(f"{config.model} at {config.budget}: {s['accepted']} genotypes accepted from {s['draws']:,} "
          f"proposals (acceptance {s['acceptance']:.2%}); {scored} in {result.seconds:.1f} s")
    rows = [[t["rank"], t["index"], format_count(t["params"]), format_count(t["macs"]), f"{t['score']:.6g}",
             t["genotype"]] for t in result.top]
    print(format_table(rows, ["rank", "cand", "params", "MACs", result.signal, "genotype"], align="rrrrrl"))
    print(f"\nwinner: {result.best.text}\n  {result.params:,} parameters, {result.macs:,} MACs, "
          f"{result.signal} {result.score:.6g}\n  saved to {result.out / 'winner.json'}")
    return 0


def _count_or_fraction(text: str) -> "int | float":
    """--screen-keep: "100" is a count, "0.1" a fraction of the samples."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (100) or a fraction (0.1), got {text!r}") from None


def _check_teacher_classes(weights: str, config: SearchConfig) -> None:
    """The students of a search are the teacher's network on the data: their classes must agree."""
    from ..data.load import load_split
    from ..errors import BlockSwapError
    from ..nn.teacher import weights_classes

    if not is_torchvision(config.model):
        raise BlockSwapError("--teacher-weights goes with --model torchvision:NAME")
    teacher = weights_classes(weights, config.model)
    data = config.data.known_classes or load_split(config.data, "train", config.input_size, "cpu", 0).num_classes
    if teacher != data:
        raise BlockSwapError(f"the teacher weights {weights!r} have {teacher} classes but {config.data} has {data}")
