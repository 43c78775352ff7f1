"""Detection commands (paper Sec. 7): ``train detector``, ``evaluate --task detection`` and
``data make-digits-coco``. The search is ``blockswap search --task detection``."""

from __future__ import annotations

import argparse
import dataclasses
import os

import torch

from ..errors import BlockSwapError
from ..files import dumps
from ..report.table import format_table
from ..space.budget import format_count
from .common import DEVICE_HELP, LOADER_WORKERS, OVERWRITE_HELP, QUIET_HELP, default_device, non_negative, positive

COCO_HELP = "coco:PATH, a folder with annotations/instances_{train,val}2017.json and {train,val}2017/"
_D = None  # DetectorConfig(), imported lazily (torchvision's detection models load slowly)


def _defaults():
    from ..train.detector import DetectorConfig

    return DetectorConfig()


def register_train(roles: argparse._SubParsersAction) -> None:
    d = _defaults()
    p = roles.add_parser(
        "detector", help="train a Mask R-CNN with a BlockSwap backbone on COCO-layout data",
        description="Train torchvision's Mask R-CNN (its default settings, as the paper) whose backbone "
                    "is --model with the block types of --genotype and an FPN over its stages, from "
                    "scratch. COCO box and mask AP on the val split after every epoch. Resumable; "
                    "data-parallel under torchrun.")
    p.add_argument("--genotype", required=True,
                   help="genotype JSON (from 'search --task detection'), 'uniform:G(N)' (every block one "
                        "type), reference:NAME or inline 'S,G(4),...'")
    p.add_argument("--model", default=None, help="backbone network (default: the genotype file's, else resnet34)")
    p.add_argument("--data", required=True, help=COCO_HELP)
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.jsonl, record.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--threads", type=positive, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    g = p.add_argument_group("training settings (default: torchvision's Mask R-CNN reference)")
    g.add_argument("--epochs", type=positive, default=d.epochs, help=f"passes over the training set (default {d.epochs})")
    g.add_argument("--batch-size", type=positive, default=d.batch_size, help=f"global minibatch (default {d.batch_size})")
    g.add_argument("--lr", type=float, default=d.lr, help=f"initial learning rate (default {d.lr}, for 16 images)")
    g.add_argument("--momentum", type=float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"L2 weight decay (default {d.weight_decay})")
    g.add_argument("--lr-steps", default=",".join(map(str, d.lr_steps)),
                   help="epochs after which the rate drops by --lr-gamma, comma-separated (default "
                        + ",".join(map(str, d.lr_steps)) + ")")
    g.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help=f"factor of each learning-rate drop (default {d.lr_gamma})")
    g.add_argument("--warmup-iters", type=non_negative, default=d.warmup_iters, help=f"iterations of linear learning-rate warm-up (default {d.warmup_iters})")
    g.add_argument("--warmup-factor", type=float, default=d.warmup_factor, help=f"learning-rate factor at the start of the warm-up (default {d.warmup_factor})")
    g.add_argument("--min-size", type=positive, default=d.min_size, help=f"shorter image side (default {d.min_size})")
    g.add_argument("--max-size", type=positive, default=None, help="longer side at most (default 1333/800 of --min-size)")
    g.add_argument("--rois-per-image", type=positive, default=d.rois_per_image,
                   help=f"RoIs sampled per image for the box head (default {d.rois_per_image})")
    g.add_argument("--hflip", type=float, default=d.hflip, help=f"horizontal flip probability (default {d.hflip})")
    g.add_argument("--skip-bad-boxes", action="store_true", help="leave degenerate boxes out instead of refusing the data (default: refuse)")
    g.add_argument("--seed", type=non_negative, default=d.seed, help=f"run seed (default {d.seed})")
    g.add_argument("--decode-workers", dest="workers", type=non_negative, default=LOADER_WORKERS,
                   help=f"image-decoding processes (default: one per usable core, at most 4, here {LOADER_WORKERS})")
    g.add_argument("--eval-batch-size", type=positive, default=d.eval_batch_size, help=f"images per evaluation step (default {d.eval_batch_size})")
    p.set_defaults(func=run_train_detector)


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BlockSwapError(f"--lr-steps {text!r} is not a comma-separated list of epochs (e.g. 16,22)") from None
    if any(s < 1 for s in steps):
        raise BlockSwapError(f"--lr-steps {text!r}: epochs must be >= 1")
    return steps


def run_train_detector(args: argparse.Namespace) -> int:
    from ..space.genotype import load_genotype
    from ..train.detector import DetectorConfig, check_backbone, train_detector

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = DetectorConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DetectorConfig)
                            if f.name not in ("lr_steps", "runtime")}, lr_steps=_steps(args.lr_steps))
    network = args.model
    if network is None:
        try:
            network = load_genotype(args.genotype).network
        except BlockSwapError:
            network = "resnet34"  # inline text and uniform: do not name a network
    check_backbone(network)  # before the genotype: a WRN's would be checked against the wrong network
    geno = load_genotype(args.genotype, network)
    record = train_detector(cfg, args.data, args.out, network=network, genotype=geno, resume=args.resume,
                            overwrite=args.overwrite, device=args.device, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0 and not args.quiet:
        print(f"{network} backbone ({format_count(record['backbone_params'])} params, "
              f"{format_count(record['backbone_macs'])} MACs at {cfg.min_size}px; detector "
              f"{format_count(record['detector_params'])}): box AP {_pct(record.get('bbox_AP'))}, "
              f"mask AP {_pct(record.get('segm_AP'))}; record in {args.out}/record.json")
    return 0


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def run_evaluate_detection(args: argparse.Namespace) -> int:
    from ..data.coco import CocoSplit
    from ..data.spec import parse_data
    from ..devices import check_device
    from ..train.coco_eval import evaluate_detector
    from ..train.detector import backbone_cost, load_detector

    if args.teacher_weights is not None:
        raise BlockSwapError("--teacher-weights goes with a torchvision:NAME classifier; a detector checkpoint holds its weights")
    data = parse_data(args.data)
    if data.task != "detection":
        raise BlockSwapError(f"--task detection evaluates on COCO-layout data (coco:PATH), not {data}")
    device = check_device(default_device(args.device))
    model, state = load_detector(args.checkpoint, device)
    split = CocoSplit(data.path, "val", device, args.loader_workers, training=False)
    desc = state["model"]
    if split.num_classes != desc["num_classes"]:
        raise BlockSwapError(f"{args.checkpoint!r} detects {desc['num_classes'] - 1} categories but {data} has "
                             f"{split.num_classes - 1}")
    batch = min(args.batch_size, 16)
    result = {"network": desc["network"], "genotype": desc["genotype"], **backbone_cost(desc), "data": str(data),
              "images": len(split), **evaluate_detector(model, split, batch)}
    if args.json:
        print(dumps(result))
        return 0
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    rows = [[kind] + [_pct(result[f"{iou}_{k}"]) for k in keys] for kind, iou in (("box", "bbox"), ("mask", "segm"))]
    print(format_table(rows, ["", *keys]))
    print(f"{result['images']} images, {result['detections']} detections; backbone {desc['network']} "
          f"{format_count(result['backbone_params'])} params: {desc['genotype']}")
    return 0


def register_make_digits_coco(what: argparse._SubParsersAction) -> None:
    from ..data.digits_coco import DigitsCocoConfig

    d = DigitsCocoConfig()
    m = what.add_parser("make-digits-coco", help="digits pasted on canvases, as a COCO detection dataset",
                        description="Write a COCO-format detection dataset made from scikit-learn's digits "
                                    "(boxes and pixel masks from the strokes): OUT/annotations/instances_"
                                    "{train,val}2017.json and OUT/{train,val}2017/*.png. Use --data coco:OUT.")
    m.add_argument("out", help="folder to create")
    m.add_argument("--train", type=positive, default=d.train, help=f"training images (default {d.train})")
    m.add_argument("--val", type=positive, default=d.val, help=f"validation images (default {d.val})")
    m.add_argument("--size", type=positive, default=d.size, help=f"canvas side in pixels (default {d.size})")
    m.add_argument("--min-digit", type=positive, default=d.min_digit, help=f"smallest digit side (default {d.min_digit})")
    m.add_argument("--max-digit", type=positive, default=d.max_digit, help=f"largest digit side (default {d.max_digit})")
    m.add_argument("--max-digits", type=positive, default=d.max_digits, help=f"digits per image, at most (default {d.max_digits})")
    m.add_argument("--seed", type=non_negative, default=d.seed, help=f"seed of the drawn canvases (default {d.seed})")
    m.set_defaults(func=run_make_digits_coco)


def run_make_digits_coco(args: argparse.Namespace) -> int:
    from ..data.digits_coco import DigitsCocoConfig, make_digits_coco
    from ..outdir import check_writable_folder

    cfg = DigitsCocoConfig(train=args.train, val=args.val, size=args.size, min_digit=args.min_digit,
                           max_digit=args.max_digit, max_digits=args.max_digits, seed=args.seed)
    check_writable_folder(args.out, "OUT")
    counts = make_digits_coco(args.out, cfg)
    print(f"wrote {counts['train_images']} training images ({counts['train_objects']} digits) and "
          f"{counts['val_images']} validation images ({counts['val_objects']} digits), {cfg.size}x{cfg.size}, "
          f"10 categories, to {args.out}; use --data coco:{args.out}")
    return 0
