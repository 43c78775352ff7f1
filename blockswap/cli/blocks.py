"""``blockswap blocks``: the block zoo with the cost of each type."""

from __future__ import annotations

import argparse

from ..files import dumps
from ..errors import BlockSwapError
from ..report.table import format_table
from ..space.blocks import parse_candidates
from ..space.budget import format_count
from ..space.complexity import Complexity
from ..space.costs import block_complexity
from .common import positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blocks", help="list the block zoo with the cost of each type",
                       description="List block types with the parameters and MACs of one block "
                                   "mapping C channels to C channels at stride 1 on an HxW input.")
    p.add_argument("--channels", type=positive, default=128, help="block width C (default 128, WRN-40-2 stage 3)")
    p.add_argument("--size", type=positive, default=8, help="input height and width H=W (default 8)")
    p.add_argument("--candidates", default=None,
                   help="comma-separated block types, or named sets joined by '+': paper, bottleneck, "
                        "structured (default: paper, the 23 CIFAR candidates)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_blocks)


def run_blocks(args: argparse.Namespace) -> int:
    if args.channels < 1 or args.size < 1:
        raise BlockSwapError(f"--channels and --size must be positive, got {args.channels} and {args.size}")
    rows = []
    start = Complexity(args.size, args.size)
    base = block_complexity("S", args.channels, args.channels, 1, start)
    for block in parse_candidates(args.candidates):
        problem = block.problem(args.channels, args.channels)
        if problem:
            rows.append({"block": block.name, "family": block.family, "params": None, "macs": None,
                         "problem": problem})
            continue
        cx = block_complexity(block, args.channels, args.channels, 1, start)
        rows.append({"block": block.name, "family": block.family, "params": cx.params, "macs": cx.macs,
                     "params_vs_S": cx.params / base.params})
    if args.json:
        print(dumps({"channels": args.channels, "size": args.size, "blocks": rows}))
        return 0
    table = [[r["block"], r["family"], r["params"] if r["params"] is not None else "-",
              format_count(r["macs"]) if r["macs"] is not None else "-",
              f"{r['params_vs_S']:.3f}" if "params_vs_S" in r else r.get("problem", "")]
             for r in rows]
    print(f"One block, {args.channels}->{args.channels} channels, stride 1, {args.size}x{args.size} input:")
    print(format_table(table, ["block", "family", "params", "MACs", "params/S"], align="llrrr"))
    return 0
