"""``blockswap cost``: exact parameters and MACs of a genotype, from formulas."""

from __future__ import annotations

import argparse

from ..files import dumps
from ..report.table import format_table
from ..space.budget import format_count
from ..space.costs import network_cost
from ..space.genotype import load_genotype
from ..space.networks import networks
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
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_cost)


def run_cost(args: argparse.Namespace) -> int:
    geno = None if args.genotype is None else load_genotype(args.genotype, args.model)
    model = args.model or (geno.network if geno is not None else "wrn-40-2")
    c = network_cost(model, geno, input_size=args.input_size, num_classes=args.num_classes)
    if args.json:
        print(dumps(c.to_dict()))
        return 0
    rows = [[b.index, b.stage + 1, b.block, f"{b.c_in}->{b.c_out}", b.stride, b.params, format_count(b.macs)]
            for b in c.per_block]
    print(format_table(rows, ["block", "stage", "type", "channels", "stride", "params", "MACs"],
                       align="rrllrrr"))
    print(f"\n{c.network} ({c.input_size}x{c.input_size} input, {c.num_classes} classes): "
          f"{c.params:,} parameters ({format_count(c.params)}), {c.macs:,} MACs ({format_count(c.macs)}); "
          f"stem+head {c.fixed_params:,} parameters")
    return 0
