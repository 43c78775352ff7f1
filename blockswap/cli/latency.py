"""``blockswap latency-table``: time every candidate block type at every block position, so that a
search can take a latency budget (``--budget latency=12ms --latency-table FILE``)."""

from __future__ import annotations

import argparse
import statistics

import torch

from ..errors import BlockSwapError
from ..files import dumps
from ..progress import progress
from ..report.table import format_table
from ..space.blocks import parse_candidates
from ..space.networks import network_spec
from .common import QUIET_HELP, non_negative, positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency-table", help="measure the latency of every candidate block at every position",
                       description="Time each candidate block type at each distinct block shape of --model, and "
                                   "the stem and head (warm-up, then the median of repeats), on this machine's "
                                   "CPU; --validate N then times N random whole networks against the table's "
                                   "prediction and stores the fitted offset. Written as it goes; --resume.")
    p.add_argument("--model", required=True, help="network whose blocks are timed, e.g. wrn-40-2")
    p.add_argument("--candidates", default=None, help="comma-separated block types (default: the paper's 23)")
    p.add_argument("--out", required=True, help="the table file to write (JSON)")
    # The one exception to "cuda if present": a table is timed on the CPU only so far.
    p.add_argument("--device", default="cpu", help="cpu, the only device timed so far (default cpu)")
    p.add_argument("--backend", default="torch",
                   help="torch (eager, inference mode) or onnxruntime (each block exported to ONNX) (default torch)")
    p.add_argument("--batch-size", type=positive, default=1, help="images per call (default 1)")
    p.add_argument("--input-size", type=positive, default=None, help="input side in pixels (default: the model's)")
    p.add_argument("--threads", type=positive, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--warmup", type=positive, default=5, help="untimed calls per entry (default 5)")
    p.add_argument("--repeats", type=positive, default=20, help="timed calls per entry; the median is kept (default 20)")
    p.add_argument("--validate", type=positive, default=None, metavar="N",
                   help="time N random whole networks, report the prediction error and fit the offset")
    p.add_argument("--seed", type=non_negative, default=0, help="seed of the validation genotypes (default 0)")
    p.add_argument("--resume", action="store_true", help="complete the table in --out")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..devices import check_device
    from ..export.latency import Protocol, check_backend, measure_table, validate_table

    check_backend(args.backend)  # before any timing: a typo must not cost minutes
    if check_device(args.device).type != "cpu":
        raise BlockSwapError(f"--device {args.device!r}: latency tables are timed on the cpu only so far "
                             "(CUDA timing needs synchronised events and was never run on a GPU here)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    spec = network_spec(args.model)
    cands = parse_candidates(args.candidates)
    protocol = Protocol(args.batch_size, args.warmup, args.repeats)
    show = not (args.quiet or args.json)
    with progress(None, "timing blocks", "entry", enabled=show) as bar:
        def tick(done, total):  # through update: refresh() would draw every entry, unthrottled
            bar.total = total
            bar.update(done - bar.n)

        table = measure_table(spec.name, cands, args.out, input_size=args.input_size, protocol=protocol,
                              resume=args.resume, backend=args.backend, progress=tick)
    figures = None
    if args.validate:
        with progress(args.validate, "validating", "net", enabled=show) as bar:
            table, figures = validate_table(table, cands, args.validate, args.seed, protocol=protocol,
                                            progress=lambda done, total: bar.update(1))
        table.save(args.out)
    if args.quiet and not args.json:  # the table is in --out
        return 0
    if args.json:
        print(dumps({"table": str(args.out), "network": table.network, "threads": table.threads,
                     "backend": table.backend, "fixed_s": table.fixed, "offset_s": table.offset, "blocks": table.blocks,
                     **({"validation": figures} if figures else {})}))
        return 0
    keys = list(dict.fromkeys(table.keys()))

    def over_positions(name: str) -> str:  # median over the block positions (not the shapes) it fits
        times = [table.blocks[k][name] for k in table.keys() if name in table.blocks.get(k, {})]
        return f"{1e3 * statistics.median(times):.3f}" if times else "-"

    rows = [[b.name, over_positions(b.name),
             *[f"{1e3 * table.blocks[k][b.name]:.3f}" if b.name in table.blocks.get(k, {}) else "-" for k in keys]]
            for b in cands]
    print(format_table(rows, ["type (ms)", "median", *keys], align="l" + "r" * (len(keys) + 1)))
    print(f"\n{table.network}, {table.backend}, batch {table.batch_size}, {table.threads} threads, "
          f"{table.machine.get('cpu', '?')}: "
          f"stem+head {1e3 * table.fixed:.3f} ms; table written to {args.out}")
    if figures:
        print(f"validation on {figures['genotypes']} random genotypes: relative error median "
              f"{figures['median_rel_error']:.1%}, worst {figures['worst_rel_error']:.1%}; with the fitted offset "
              f"{1e3 * figures['offset_s']:+.3f} ms: median {figures['median_rel_error_corrected']:.1%}, worst "
              f"{figures['worst_rel_error_corrected']:.1%}")
        measured = [r["measured_s"] for r in figures["rows"]]
        print(f"measured whole networks: {1e3 * min(measured):.2f}..{1e3 * max(measured):.2f} ms "
              f"(median {1e3 * statistics.median(measured):.2f})")
    return 0
