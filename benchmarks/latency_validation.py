"""How well the additive latency model predicts whole networks, on this machine.

    python benchmarks/latency_validation.py --out wrn-40-2-latency.json        # measure, then validate
    python benchmarks/latency_validation.py --table wrn-40-2-latency.json      # validate a given table
    python benchmarks/latency_validation.py --model wrn-10-1 --input-size 16 --candidates S,G(4),B(2) \
        --repeats 5 --validate 5 --out /tmp/t.json                             # a quick check

Measures (or reads) the latency table of `--model` (`blockswap.export.latency.measure_table`:
warm-up, then the median of repeats per block type and block shape; resumable), times
`--validate` random whole networks with the same protocol (`validate_table`, seeded) and prints
the machine, the table (ms per block type: median over the block positions, and stem + head),
and the median and worst relative error of the prediction before and after the fitted offset.
Run it on an idle machine: other processes on the cores make single calls tens of ms slower.
The fitted offset is written back to the table file.
"""

from __future__ import annotations

import argparse
import statistics
import time

from machine import describe

from blockswap.export.latency import BACKENDS, Protocol, measure_table, validate_table
from blockswap.space.blocks import parse_candidates
from blockswap.space.latency import LatencyTable, load_latency_table


def summary(table: LatencyTable) -> str:
    """Per block type: the median over the block positions it fits, in ms."""
    keys = table.keys()
    names = sorted({b for row in table.blocks.values() for b in row})
    lines = [f"{'type':10s} {'median ms':>9s} {'positions':>9s}"]
    for name in names:
        times = [table.blocks[k][name] for k in keys if name in table.blocks.get(k, {})]
        lines.append(f"{name:10s} {1e3 * statistics.median(times):9.3f} {len(times):9d}")
    lines.append(f"stem + head {1e3 * table.fixed:.3f} ms; {len(set(keys))} shapes for {len(keys)} positions")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=None, help="validate this table instead of measuring one")
    parser.add_argument("--out", default="wrn-40-2-latency.json", help="where a measured table is written")
    parser.add_argument("--model", default="wrn-40-2")
    parser.add_argument("--candidates", default=None, help="block types (default: the paper's 23)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--backend", default="torch", choices=BACKENDS)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--validate", type=int, default=30, help="random whole networks to time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(describe())
    cands = parse_candidates(args.candidates)
    t0 = time.perf_counter()
    if args.table:
        path = args.table
        table = load_latency_table(path)
        protocol = Protocol(table.batch_size, args.warmup, args.repeats)
        print(f"table {path}: {table.network}, {table.backend}, {table.threads} threads, measured on "
              f"{table.machine.get('cpu', '?')} with torch {table.machine.get('torch', '?')}")
    else:
        path = args.out
        protocol = Protocol(1, args.warmup, args.repeats)
        table = measure_table(args.model, cands, path, input_size=args.input_size, protocol=protocol,
                              backend=args.backend, resume=True)
        print(f"measured {path} in {time.perf_counter() - t0:.0f} s")
    print(summary(table))
    t0 = time.perf_counter()
    fitted, fig = validate_table(table, None if args.table else cands, args.validate, args.seed, protocol=protocol)
    fitted.save(path)
    measured = [r["measured_s"] for r in fig["rows"]]
    print(f"\nvalidation on {fig['genotypes']} random genotypes (seed {args.seed}, {time.perf_counter() - t0:.0f} s): "
          f"measured {1e3 * min(measured):.2f}..{1e3 * max(measured):.2f} ms, "
          f"median {1e3 * statistics.median(measured):.2f}")
    print(f"{'prediction':32s} {'median rel. error':>17s} {'worst rel. error':>16s}")
    print(f"{'sum of isolated blocks':32s} {fig['median_rel_error']:17.1%} {fig['worst_rel_error']:16.1%}")
    label = f"with the offset ({1e3 * fig['offset_s']:+.2f} ms)"
    print(f"{label:32s} "
          f"{fig['median_rel_error_corrected']:17.1%} {fig['worst_rel_error_corrected']:16.1%}")


if __name__ == "__main__":
    main()
