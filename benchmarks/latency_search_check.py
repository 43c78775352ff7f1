"""Measured against predicted latency of a latency search's top candidates.

    python benchmarks/latency_search_check.py --table TABLE.json --search runs/search-14ms

Times each genotype in the search's top.json end to end `--runs` times with the table's protocol
(`blockswap.export.latency.measure_network`: warm-up 5, median of 20, batch of the table) and
prints predicted, measured and whether the measurement lies in the search's budget window.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from machine import describe

from blockswap import SearchConfig, build_model
from blockswap.export.latency import Protocol, measure_network
from blockswap.space.blocks import split_types
from blockswap.space.latency import load_latency_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--search", required=True, help="output folder of a search with --budget latency=...")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    table = load_latency_table(args.table)
    config = SearchConfig.from_dict(json.loads((Path(args.search) / "run.json").read_text())["config"])
    budget = config.budget
    protocol = Protocol(table.batch_size, 5, 20)
    errors = []
    for row in json.loads((Path(args.search) / "top.json").read_text())["top"]:
        predicted = table.predict(split_types(row["genotype"]))
        runs = [measure_network(build_model(table.network, row["genotype"]), table.input_size, protocol)
                for _ in range(args.runs)]
        measured = statistics.median(runs)
        errors.append(abs(predicted - measured) / measured)
        print(f"rank {row['rank']:2d}: predicted {1e3 * predicted:.2f} ms, measured {1e3 * measured:.2f} ms "
              f"(runs {', '.join(f'{1e3 * r:.2f}' for r in runs)}), error {(predicted - measured) / measured:+.1%}, "
              f"in {budget}: {budget.lower <= measured <= budget.upper}")
    print(f"median |error| {statistics.median(errors):.1%}, worst {max(errors):.1%}")


if __name__ == "__main__":
    main()
