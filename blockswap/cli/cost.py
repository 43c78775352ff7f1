"""``blockswap cost``: exact parameters and MACs of a genotype, from formulas."""

from __future__ import annotations

import argparse

from ..errors import BlockSwapError
from ..files import dumps
from ..report.table import format_table
from ..space.budget import format_count
from ..space.costs import network_cost
from ..space.genotype import load_genotype
from ..space.latency import load_latency_table
from ..space.networks import network_spec, networks
from ..space.refs import is_torchvision
from ..tasks import TASKS
from .common import positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="exact parameters and MACs of a genotype",
                       description="Parameters (BN affine included) and MACs (conv + linear "
                                   "multiply-accumulates per image) of a network, from formulas.")
    p.add_argument("--model", default=None,
                   help=f"{', '.join(networks())} (default: the genotype file's network, else wrn-40-2)")
    p.add_argument("--genotype", default=None,
                   help="genotype JSON file, reference CSV, reference:NAME (e.g. reference:bs800k), "
                        "or inline text 'S,G(4),...' (default: all S)")
    p.add_argument("--input-size", type=positive, default=None, help="input side in pixels (default 32 WRN, 224 ResNet)")
    p.add_argument("--num-classes", type=positive, default=None, help="classifier outputs (default 10 WRN, 1000 ResNet)")
    p.add_argument("--teacher-weights", default=None,
                   help="a torchvision:NAME model's teacher state dict: the classes are its classifier's")
    p.add_argument("--latency-table", default=None,
                   help="also show the latency each block and the network take, as this table predicts")
    p.add_argument("--task", default=None, choices=TASKS.names(),
                   help="what is counted, as a search of that task counts it: classification the whole network; "
                        "detection the backbone without pool and classifier, at the detector's 800-pixel "
                        "side unless --input-size (default classification)")
    p.add_argument("--checkpoint", default=None,
                   help="count a trained network instead: dense and non-zero parameters and MACs of a run "
                        "folder or checkpoint (pruned students: the non-zero counts are what their budget counts)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_cost)


def run_cost(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        return _checkpoint_cost(args)
    geno = None if args.genotype is None else load_genotype(args.genotype, args.model)
    model = args.model or (geno.network if geno is not None else "wrn-40-2")
    task = TASKS[args.task or "classification"]
    spec = task.counted_spec(network_spec(model, _classes(args, model)))
    c = network_cost(spec, geno, input_size=task.input_size(spec, args.input_size))
    table = None if args.latency_table is None else load_latency_table(args.latency_table)
    if table is not None and (table.network, table.input_size) != (c.network, c.input_size):
        raise BlockSwapError(f"latency table {args.latency_table!r} is for {table.network} at {table.input_size}px, "
                             f"not {c.network} at {c.input_size}px")
    seconds = [table.block_seconds(b.index, b.block) for b in c.per_block] if table else []
    predicted = table.predict(b.block for b in c.per_block) if table else None
    if args.json:
        print(dumps({**c.to_dict(), **({"latency_s": predicted, "latency_per_block_s": seconds,
                                        "latency_table": table.to_dict() | {"blocks": None}} if table else {})}))
        return 0
    # Stages numbered from 0, as the blocks and --json number them.
    rows = [[b.index, b.stage, b.block, f"{b.c_in}->{b.c_out}", b.stride, b.params, format_count(b.macs),
             *([f"{1e3 * seconds[b.index]:.3f}"] if table else [])] for b in c.per_block]
    print(format_table(rows, ["block", "stage", "type", "channels", "stride", "params", "MACs",
                              *(["ms"] if table else [])], align="rrllrrrr"))
    counted = f"{c.num_classes} classes" if spec.classifier else "backbone, no classifier"
    print(f"\n{c.network} ({c.input_size}x{c.input_size} input, {counted}): "
          f"{c.params:,} parameters ({format_count(c.params)}), {c.macs:,} MACs ({format_count(c.macs)}); "
          f"stem+head {c.fixed_params:,} parameters")
    if table is not None:
        print(f"predicted latency {1e3 * predicted:.3f} ms per batch of {table.batch_size} ({table.device}, "
              f"{table.threads} threads; stem+head {1e3 * table.fixed:.3f} ms, offset {1e3 * table.offset:+.3f} ms)")
    return 0


def _classes(args: argparse.Namespace, model: str) -> int | None:
    """--num-classes, else the classes of --teacher-weights (a torchvision:NAME teacher's classifier)."""
    if args.teacher_weights is None:
        return args.num_classes
    if not is_torchvision(model):
        raise BlockSwapError("--teacher-weights goes with --model torchvision:NAME")
    from ..nn.teacher import weights_classes

    classes = weights_classes(args.teacher_weights, model)
    if args.num_classes is not None and args.num_classes != classes:
        raise BlockSwapError(f"--num-classes {args.num_classes} but the teacher weights have {classes} classes")
    return classes


def _checkpoint_cost(args: argparse.Namespace) -> int:
    """Counted from the checkpoint's weights: a pruned student's zeros are not counted as non-zero."""
    if args.genotype is not None or args.model is not None or args.latency_table is not None or \
            args.task is not None:
        raise BlockSwapError("--checkpoint counts the network it holds; leave --model, --genotype, "
                             "--latency-table and --task out")
    from ..train import load_model
    from ..train.models import counted_cost
    from ..train.prune import nonzero_params, sparse_macs

    net, desc = load_model(args.checkpoint)
    size = args.input_size or desc.input_size
    dense = counted_cost(net, size)
    counts = {"model": desc.text, "genotype": desc.genotype, "prune": desc.prune, "input_size": size,
              "params": dense["params"], "nonzero_params": nonzero_params(net),
              "macs": dense["macs"], "nonzero_macs": sparse_macs(net, size)}
    if args.json:
        print(dumps(counts))
        return 0
    rows = [["parameters", f"{counts['params']:,}", f"{counts['nonzero_params']:,}"],
            ["MACs per image", f"{counts['macs']:,}", f"{counts['nonzero_macs']:,}"]]
    print(format_table(rows, ["", "dense", "non-zero"], align="lrr"))
    print(f"\n{args.checkpoint}: {desc.text}" + (f" pruned ({desc.prune})" if desc.prune else "")
          + f", {size}x{size} input")
    return 0

