"""``blockswap benchmark``: latency and throughput of a student next to its teacher, measured here."""

from __future__ import annotations

import argparse
import sys

import torch

from ..errors import BlockSwapError
from ..files import cpu_model, dumps
from ..report.table import format_table
from ..space.budget import format_count
from ..space.refs import is_torchvision
from .common import TORCHVISION_WEIGHTS_HELP, integers, network_from_args, positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="latency and throughput of a student and its teacher on this machine",
                       description="Time a trained student (and its teacher) side by side in one run: torch "
                                   "eager, torch channels-last and onnxruntime, at each batch size (warm-up, "
                                   "then the median of repeats). Prints the CPU, torch build and threads.")
    p.add_argument("--checkpoint", default=None, help="run folder or checkpoint of the student ('blockswap train')")
    p.add_argument("--model", default=None, help="or an untrained network: wrn-40-2, ... (with --genotype)")
    p.add_argument("--genotype", default=None, help="genotype of the untrained network (file, reference:NAME or text)")
    p.add_argument("--teacher", default=None,
                   help="teacher run folder or torchvision:NAME (default: the student's recorded teacher, if any)")
    p.add_argument("--teacher-weights", default=None, help="with --teacher torchvision:NAME: " + TORCHVISION_WEIGHTS_HELP)
    p.add_argument("--no-teacher", action="store_true", help="time the student alone")
    p.add_argument("--batch-sizes", type=integers(1), default=(1, 64), help="comma-separated batch sizes (default 1,64)")
    p.add_argument("--runtimes", default="torch,torch-channels-last,onnxruntime",
                   help="comma-separated: torch, torch-channels-last, onnxruntime (default all)")
    p.add_argument("--repeats", type=positive, default=10, help="timed runs per measurement; the median is shown (default 10)")
    p.add_argument("--warmup", type=positive, default=3, help="untimed runs first (default 3)")
    p.add_argument("--threads", type=positive, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.speed import benchmark
    from ..export.timing import format_ms, noisy_note
    from ..files import versions

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    student, desc, recorded_teacher = _student(args)
    networks = {"student": student}
    costs = {"student": desc.cost()}
    teacher_source = None if args.no_teacher else (args.teacher or recorded_teacher)
    if teacher_source is not None:
        from ..train import load_model

        networks["teacher"], t_desc = load_model(teacher_source, args.teacher_weights, "cpu")
        costs["teacher"] = t_desc.cost()
        if t_desc.input_size != desc.input_size:
            raise BlockSwapError(f"the teacher takes {t_desc.input_size}px inputs, the student {desc.input_size}px")
    say = None if args.json else (lambda msg: print(f"timing {msg} ...", file=sys.stderr))
    timings = benchmark(networks, desc.input_size, batch_sizes=args.batch_sizes, runtimes=runtimes,
                        warmup=args.warmup, repeats=args.repeats, progress=say)
    machine = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "versions": versions()}
    if args.json:
        print(dumps({"machine": machine, "input_size": desc.input_size, "costs": costs,
                     "timings": [t.to_dict() for t in timings]}))
        return 0
    print(f"{machine['cpu']}; torch {machine['torch']}; {machine['threads']} threads; "
          f"{desc.input_size}x{desc.input_size} inputs; median of {args.repeats} after {args.warmup} warm-up")
    teachers = {(t.runtime, t.batch_size): t for t in timings if t.network == "teacher"}
    rows = []
    for t in timings:  # a noisy timing (or a ratio to one) is shown as such, not as a speed
        vs = teachers.get((t.runtime, t.batch_size))
        ratio = "" if vs is None or t.network == "teacher" else \
            "noisy" if t.noisy or vs.noisy else f"{vs.seconds / t.seconds:.2f}x"
        rows.append([t.network, format_count(costs[t.network]["params"]), format_count(costs[t.network]["macs"]),
                     t.runtime, t.batch_size, format_ms(t.seconds, t.spread),
                     "-" if t.noisy else f"{t.images_per_second:.0f}", ratio])
    print(format_table(rows, ["network", "params", "MACs", "runtime", "batch", "median +- spread", "img/s",
                              "vs teacher"], align="lrrlrrrr"))
    noisy = sum(t.noisy for t in timings)
    if noisy:
        print(noisy_note(noisy, len(timings), "rerun on an idle machine or with more --repeats"))
    return 0


def _student(args: argparse.Namespace):
    """(network in eval mode, its ModelDesc, the teacher source its run recorded or None)."""
    from ..train import load_checkpoint

    net, desc = network_from_args(args.checkpoint, None, args.model, args.genotype)
    teacher = None
    if args.checkpoint is not None:
        teacher = (load_checkpoint(args.checkpoint).get("teacher") or {}).get("source")
        if is_torchvision(teacher) and args.teacher_weights is None:
            teacher = None  # its weights file is not recorded with it
    return net, desc, teacher
