"""``blockswap evaluate``: top-1 / top-5 error of a trained network on a validation split."""

from __future__ import annotations

import argparse
import dataclasses

from ..devices import check_device
from ..files import dumps
from ..data.load import load_split
from ..errors import BlockSwapError
from ..report.table import format_table
from ..space.budget import format_count
from ..train import evaluate, load_model
from .common import (DATA_HELP, DEVICE_HELP, LOADER_WORKERS, TORCHVISION_WEIGHTS_HELP, default_device, deprecated_alias,
                     non_negative, positive)


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="top-1 / top-5 error of a checkpoint on a validation split",
                       description="Top-1 and top-5 error (percent) of a trained network on the "
                                   "validation split of --data.")
    e.add_argument("--checkpoint", required=True,
                   help="checkpoint file or run folder from 'blockswap train', or torchvision:resnet34")
    e.add_argument("--teacher-weights", default=None, help="with --checkpoint torchvision:NAME: " + TORCHVISION_WEIGHTS_HELP)
    deprecated_alias(e, "--weights", "--teacher-weights", "teacher_weights")
    e.add_argument("--data", required=True, help=DATA_HELP)
    e.add_argument("--input-size", type=positive, default=None,
                   help="image side in pixels the data is resized to (default: the network's, e.g. 224 for a "
                        "torchvision teacher)")
    e.add_argument("--batch-size", type=positive, default=500, help="images per step (default 500)")
    e.add_argument("--loader-workers", type=non_negative, default=LOADER_WORKERS,
                   help=f"ImageNet (and COCO) loader processes (default: one per usable core, at most 4, here "
                        f"{LOADER_WORKERS})")
    e.add_argument("--device", default=None, help=DEVICE_HELP)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--task", choices=("classification", "detection"), default="classification",
                   help="detection: a 'train detector' checkpoint on coco:PATH, COCO box and mask AP "
                        "(default classification)")
    e.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.task == "detection":
        from .detect import run_evaluate_detection

        return run_evaluate_detection(args)
    device = check_device(default_device(args.device))
    net, desc = load_model(args.checkpoint, args.teacher_weights, device)
    dev = next(net.parameters()).device
    if args.input_size is not None:  # the MACs shown are then those at this size
        desc = dataclasses.replace(desc, input_size=args.input_size)
    split = load_split(args.data, "val", desc.input_size, dev, args.loader_workers)
    if split.num_classes != desc.num_classes:
        raise BlockSwapError(f"{args.checkpoint!r} has {desc.num_classes} classes but {args.data} has "
                             f"{split.num_classes}")
    if args.batch_size < 1:
        raise BlockSwapError(f"--batch-size must be positive, got {args.batch_size}")
    result = {"model": desc.text, "genotype": desc.genotype, **desc.cost(), "data": args.data,
              "input_size": desc.input_size,
              **evaluate(net, split, batch_size=args.batch_size)}
    if args.json:
        print(dumps(result))
        return 0
    rows = [[desc.text, format_count(result["params"]), format_count(result["macs"]), result["images"],
             f"{result['top1_error']:.2f}", f"{result['top5_error']:.2f}", f"{result['loss']:.4f}"]]
    print(format_table(rows, ["model", "params", "MACs", "images", "top-1 err %", "top-5 err %", "loss"]))
    if desc.genotype:
        print(f"genotype: {desc.genotype}")
    return 0
