"""``blockswap experiment FILE|PRESET``: a grid of budgets x methods x seeds, run and resumed as one job."""

from __future__ import annotations

import argparse
import sys

from ..experiments import METHODS, ExperimentOptions, load_experiment, presets, run_experiment
from ..files import dumps
from .common import DEVICE_HELP, OVERWRITE_HELP, QUIET_HELP, TORCHVISION_WEIGHTS_HELP, positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment", help="run an experiment grid (baselines, studies) and record it in one store",
        description="Expand an experiment (a TOML file, or a preset: " + ", ".join(presets()) + ") into "
                    "teachers, searches and students; run what is not done yet into --out, one after "
                    "another or as Ray tasks. Rerun the same command to resume: finished runs are "
                    "skipped, interrupted ones continue from their checkpoints. Then: "
                    "blockswap report experiment OUT --out REPORT_DIR.",
        epilog="methods ([methods.NAME] tables): " + "; ".join(f"{name}: {m.summary}" for name, m in METHODS.items()))
    p.add_argument("experiment", help="experiment TOML file or preset name")
    p.add_argument("--out", required=True, help="experiment folder: experiment.sqlite and runs/")
    p.add_argument("--data", default=None, help="replace the file's data (e.g. cifar10:/data/cifar10)")
    p.add_argument("--budgets", default=None, metavar="B,B",
                   help="run only these of the file's budgets (comma-separated, e.g. 200k), to split a long "
                        "experiment into sittings; rerun with others to add them (default: all)")
    p.add_argument("--teacher-weights", default=None,
                   help="replace the file's teacher_weights: " + TORCHVISION_WEIGHTS_HELP)
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one run after another in this process; ray: Ray tasks (default local)")
    p.add_argument("--address", default=None, help="Ray cluster address (auto, host:6379); default: a local Ray")
    p.add_argument("--cpus-per-run", type=positive, default=1, help="Ray: CPUs (torch threads) per run (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0, help="Ray: GPUs per run (default 0)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--threads", type=positive, default=None, help="local: torch threads (default: torch's choice)")
    p.add_argument("--limit", type=positive, default=None, help="run at most N runs now, then stop (resume later)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--dry-run", action="store_true", help="make every check a run makes, list the runs and their status; run nothing")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_experiment(args.experiment, data=args.data, teacher_weights=args.teacher_weights)
    if args.budgets is not None:
        spec = _only_budgets(spec, args.budgets)
    if args.dry_run:
        return _dry_run(spec, args.out)
    options = ExperimentOptions(executor=args.executor, address=args.address, cpus_per_run=args.cpus_per_run,
                                gpus_per_run=args.gpus_per_run, device=args.device, threads=args.threads,
                                limit=args.limit, progress=not args.quiet and not args.json)
    result = run_experiment(spec, args.out, options, overwrite=args.overwrite)
    summary = {"out": str(result.out), "runs": result.total, "done": result.done, "ran_now": result.ran_now,
               "failed": result.failed, "seconds": result.seconds}
    if args.json:
        print(dumps(summary))
    elif args.quiet:  # failures still reach stderr: they are errors
        for key, error in result.failed.items():
            print(f"  failed {key}: {error}", file=sys.stderr)
    else:
        print(f"experiment {spec.name}: {result.done} of {result.total} runs done ({result.ran_now} now, "
              f"{result.seconds:.0f} s); results in {str(result.out / 'experiment.sqlite')!r}")
        for key, error in result.failed.items():
            print(f"  failed {key}: {error}", file=sys.stderr)
        if result.done < result.total and not result.failed:
            print("rerun the same command to continue", file=sys.stderr)
        elif result.done == result.total:
            print(f"next: blockswap report experiment {result.out} --out {result.out / 'report'}")
    return 1 if result.failed else 0


def _only_budgets(spec, text: str):
    """The experiment restricted to the budgets named in `text`, each one of its own."""
    from dataclasses import replace

    from ..errors import BlockSwapError, choices
    from ..space.budget import parse_budget

    wanted = [parse_budget(t) for t in text.split(",") if t.strip()]
    if not wanted:
        raise BlockSwapError(f"--budgets {text!r} names no budget; the file's: {choices([b.text for b in spec.budgets])}")
    for b in wanted:
        if b not in spec.budgets:
            raise BlockSwapError(f"--budgets: {b.text} is not a budget of {spec.name}; its budgets: "
                                 f"{choices([x.text for x in spec.budgets])}")
    return replace(spec, budgets=tuple(b for b in spec.budgets if b in wanted))


def _dry_run(spec, out: str) -> int:
    from ..experiments.runner import plan
    from ..report.table import format_table

    runs = plan(spec, out)  # every check a run makes, before it trains
    rows = [[r.key, r.phase, r.method, r.budget or "-", r.seed, status] for r, status in runs]
    print(format_table(rows, ["run", "phase", "method", "budget", "seed", "status"], align="lllllr"))
    print(f"\n{len(runs)} runs; {sum(status == 'done' for _, status in runs)} done")
    return 0
