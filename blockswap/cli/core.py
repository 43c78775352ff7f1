"""``blockswap blocks`` and ``blockswap cost``: the zoo and exact costs, without training."""

from __future__ import annotations

import argparse
import json

from ..blocks import Block, Complexity, parse_candidates
from ..cost import cost, format_count
from ..errors import BlockSwapError
from ..genotype import load_genotype
from ..report import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blocks", help="list the block zoo with the cost of each type",
                       description="List block types with the parameters and MACs of one block "
                                   "mapping C channels to C channels at stride 1 on an HxW input.")
    p.add_argument("--channels", type=int, default=128, help="block width C (default 128, WRN-40-2 stage 3)")
    p.add_argument("--size", type=int, default=8, help="input height and width H=W (default 8)")
    p.add_argument("--candidates", default=None,
                   help="comma-separated block types (default: the paper's 23 CIFAR candidates)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_blocks)

    p = sub.add_parser("cost", help="exact parameters and MACs of a genotype",
                       description="Parameters (BN affine included) and MACs (conv + linear "
                                   "multiply-accumulates per image) of a network, from formulas.")
    p.add_argument("--model", default=None,
                   help="wrn-D-k, resnet18 or resnet34 (default: the genotype file's network, else wrn-40-2)")
    p.add_argument("--genotype", default=None,
                   help="genotype JSON file, reference CSV, reference:NAME (e.g. reference:bs800k), "
                        "or inline text 'S,G(4),...' (default: all S)")
    p.add_argument("--input-size", type=int, default=None, help="input side in pixels (default 32 WRN, 224 ResNet)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default 10 WRN, 1000 ResNet)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_cost)


def run_blocks(args: argparse.Namespace) -> int:
    if args.channels < 1 or args.size < 1:
        raise BlockSwapError(f"--channels and --size must be positive, got {args.channels} and {args.size}")
    rows = []
    base = Block.complexity("S", args.channels, args.channels, 1, Complexity(args.size, args.size))
    for block in parse_candidates(args.candidates):
        problem = block.problem(args.channels, args.channels)
        if problem:
            rows.append({"block": block.name, "family": block.family, "params": None, "macs": None,
                         "problem": problem})
            continue
        cx = Block.complexity(block, args.channels, args.channels, 1, Complexity(args.size, args.size))
        rows.append({"block": block.name, "family": block.family, "params": cx.params, "macs": cx.macs,
                     "params_vs_S": cx.params / base.params})
    if args.json:
        print(json.dumps({"channels": args.channels, "size": args.size, "blocks": rows}))
        return 0
    table = [[r["block"], r["family"], r["params"] if r["params"] is not None else "-",
              format_count(r["macs"]) if r["macs"] is not None else "-",
              f"{r['params_vs_S']:.3f}" if "params_vs_S" in r else r.get("problem", "")]
             for r in rows]
    print(f"One block, {args.channels}->{args.channels} channels, stride 1, {args.size}x{args.size} input:")
    print(format_table(table, ["block", "family", "params", "MACs", "params/S"], align="llrrr"))
    return 0


def run_cost(args: argparse.Namespace) -> int:
    geno = None if args.genotype is None else load_genotype(args.genotype, args.model)
    model = args.model or (geno.network if geno is not None else "wrn-40-2")
    c = cost(model, geno, input_size=args.input_size, num_classes=args.num_classes)
    if args.json:
        print(json.dumps(c.to_dict()))
        return 0
    rows = [[b.index, b.stage + 1, b.block, f"{b.c_in}->{b.c_out}", b.stride, b.params, format_count(b.macs)]
            for b in c.per_block]
    print(format_table(rows, ["block", "stage", "type", "channels", "stride", "params", "MACs"],
                       align="rrllrrr"))
    print(f"\n{c.network} ({c.input_size}x{c.input_size} input, {c.num_classes} classes): "
          f"{c.params:,} parameters ({format_count(c.params)}), {c.macs:,} MACs ({format_count(c.macs)}); "
          f"stem+head {c.fixed_params:,} parameters")
    return 0
