"""``blockswap report``: tables and plots of searches and training runs."""

from __future__ import annotations

import argparse

from ..files import dumps
from ..report.plots import check_plot_path
from ..report import format_table, load_records, plot_runs, plot_search, run_groups, search_table
from ..space.budget import format_count
from .common import deprecated_alias, positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables and plots of searches and training runs")
    rsub = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    s = rsub.add_parser("search", help="the ranked candidates of a search folder, and a scatter plot",
                        description="Rank the candidates of a `blockswap search` output folder; "
                                    "optionally plot the ranking signal against cost.")
    s.add_argument("folder", help="output folder of `blockswap search` (its results.sqlite)")
    s.add_argument("--top-k", type=positive, default=10, help="best candidates to show (default 10)")
    deprecated_alias(s, "--top", "--top-k", "top_k", type=positive)
    s.add_argument("--plot", default=None, help="write a plot to this file (.png, .pdf, .svg)")
    s.add_argument("--metric", choices=("params", "macs"), default="params", help="cost axis of the plot (default params)")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    s.set_defaults(func=run_search_report)

    r = rsub.add_parser("runs", help="trained networks: error mean and std over seeds, and a plot",
                        description="Group training runs (record.json files) by method, network "
                                    "and genotype; show top-1/top-5 error mean +- std over seeds.")
    r.add_argument("paths", nargs="+", help="run folders, record.json files, or folders of runs")
    r.add_argument("--plot", default=None, help="write error vs parameters to this file")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    r.set_defaults(func=run_runs_report)

    e = rsub.add_parser("experiment", help="the report of a `blockswap experiment`: tables, plots, the paper's numbers",
                        description="Write report.md, a self-contained report.html, summary.json and PNG "
                                    "figures for an experiment folder: students at each budget against the "
                                    "paper's (Table 2, Figure 3, Appendix C), random vs single blocktypes "
                                    "(Figure 2), ranking signals against final error with bootstrap intervals "
                                    "(Table 1), samples needed (Sec. 4.3), good and bad networks (Sec. 4.4), "
                                    "block sensitivity (Appendix B) and the chosen networks.")
    e.add_argument("results", help="the --out folder of `blockswap experiment` (or its experiment.sqlite)")
    e.add_argument("--out", required=True, help="report folder (created; files in it are replaced)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run_experiment_report)


def run_search_report(args: argparse.Namespace) -> int:
    if args.plot:
        check_plot_path(args.plot)
    table = search_table(args.folder)
    ranked = table.ranked()[: args.top_k]
    if args.plot:
        plot_search(table, args.plot, args.metric)
    if args.json:
        print(dumps({"folder": str(table.folder), "signal": table.signal, "scored": len(table.scored),
                          "candidates": len(table.rows), "top": ranked,
                          **({"plot": args.plot} if args.plot else {})}))
        return 0
    rows = [[i + 1, f"{r['score']:.6g}", format_count(r["params"]), format_count(r["macs"]), r["genotype"]]
            for i, r in enumerate(ranked)]
    print(format_table(rows, ["rank", table.signal, "params", "MACs", "genotype"], align="rrrrl"))
    print(f"\n{len(table.scored)} of {len(table.rows)} candidates scored in {table.folder}"
          + (f"; plot written to {args.plot}" if args.plot else ""))
    return 0


def run_runs_report(args: argparse.Namespace) -> int:
    if args.plot:
        check_plot_path(args.plot)
    groups = run_groups(load_records(args.paths))
    if args.plot:
        plot_runs(groups, args.plot)
    if args.json:
        print(dumps({"groups": groups, **({"plot": args.plot} if args.plot else {})}))
        return 0
    # The dataset is a column only when the runs differ in it: rows of two datasets would
    # otherwise look like one setting with two results.
    data = len({g["data"] for g in groups}) > 1
    # What sets a group apart from its look-alikes gets its own column, only when some group has it.
    differs = any(g["setting"] for g in groups)
    rows = [[g["method"], *([g["setting"]] if differs else []), *([g["data"]] if data else []),
             g["network"], _short(g["genotype"]), _params(g), format_count(g["macs"]), f"n={g['runs']}",
             _error(g, "top1"), _error(g, "top5")] for g in groups]
    print(format_table(rows, ["method", *(["differs in"] if differs else []), *(["data"] if data else []),
                              "network", "genotype", "params", "MACs", "runs", "top-1 err %", "top-5 err %"],
                       align="l" * (4 + differs + data) + "rrrr"))
    for g in groups:
        if g["repeats"]:
            print(f"note: {', '.join(g['repeats'])} repeat(s) a seed already in its group; counted once")
    if args.plot:
        print(f"\nplot written to {args.plot}")
    return 0


def run_experiment_report(args: argparse.Namespace) -> int:
    from ..outdir import check_writable_folder
    from ..report.experiment import experiment_report

    check_writable_folder(args.out)
    summary = experiment_report(args.results, args.out)
    if args.json:
        print(dumps(summary))
        return 0
    print(f"report written to {summary['report']} and {summary['html']}")
    print("sections: " + "; ".join(summary["sections"]))
    return 0


def _error(group: dict, which: str) -> str:
    mean = group[f"{which}_error"]
    std = group[f"{which}_std"]  # None for a single run
    return "-" if mean is None else f"{mean:.2f}" + ("" if std is None else f" +- {std:.2f}")


def _params(group: dict) -> str:
    """A pruned network's non-zero parameters of its dense count, else its parameters."""
    if group.get("nonzero_params"):
        return f"{format_count(group['nonzero_params'])} of {format_count(group['params'])}"
    return format_count(group["params"])


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
