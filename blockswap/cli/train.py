"""``blockswap train teacher|student`` (and ``train detector``: `cli.detect`).

Every field of `TrainConfig` is a flag (``--batch-size``, ``--weight-decay``, ``--no-flip``,
...); flags left out take the value of the chosen ``--recipe``. Data-parallel training is the
same command under ``torchrun --nproc_per_node=N -m blockswap train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re

import torch

from ..data.spec import parse_data
from ..errors import BlockSwapError
from ..space.budget import format_count
from ..space.genotype import load_genotype
from ..space.refs import is_torchvision, torchvision_arch
from ..train import RECIPES, ModelDesc, TrainConfig, load_checkpoint, parse_model, recipe, train_model
from .common import (CLASSIFICATION_DATA_HELP, DEVICE_HELP, LOADER_WORKERS, OVERWRITE_HELP, QUIET_HELP,
                     TORCHVISION_WEIGHTS_HELP, Deprecated, deprecated_alias, non_negative, positive)

_TYPES = {"float": float, "str": str}
_MAY_BE_ZERO = frozenset({"seed", "crop_pad", "cutout", "workers", "train_images"})  # integer settings where 0 means something
# Flag names that differ from the field name (issue 20: one name per meaning across commands):
# --lr-gamma as torchvision's (and `train detector`'s); --loader-workers, not --workers. The
# period --step-epochs keeps its name: `train detector`'s --lr-steps are milestones (16,22), a
# different value, and one name must not take both.
_FLAGS = {"step_gamma": "--lr-gamma", "workers": "--loader-workers"}
_OLD_FLAGS = {"step_gamma": "--step-gamma"}  # deprecated spellings, kept for one version
_STUDENT_ONLY = frozenset({"beta", "kd_weight", "kd_temperature"})  # distillation: no teacher to distil from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a teacher, or a student by attention transfer",
                       description="Train a teacher (cross-entropy) or a student (cross-entropy + "
                                   "attention transfer from a frozen teacher). Resumable; run under "
                                   "torchrun for data-parallel training.")
    roles = p.add_subparsers(dest="role", metavar="ROLE", required=True)

    t = roles.add_parser("teacher", help="train a network from scratch with cross-entropy",
                         description="Train a network (all standard blocks) with cross-entropy.")
    t.add_argument("--model", required=True,
                   help="wrn-D-k (e.g. wrn-40-2), resnet18/resnet34, or torchvision:resnet18/34")
    _common(t, student=False)
    t.set_defaults(func=run_train)

    s = roles.add_parser("student", help="train a genotype, distilled from a teacher",
                         description="Train a student network given by a genotype with attention "
                                     "transfer from --teacher (and Hinton KD if --kd-weight > 0). "
                                     "Without --teacher the student trains with cross-entropy alone.")
    s.add_argument("--teacher", default=None,
                   help="teacher checkpoint (file or run folder of 'train teacher'), or torchvision:resnet34")
    s.add_argument("--teacher-weights", default=None, help="with --teacher torchvision:NAME: " + TORCHVISION_WEIGHTS_HELP)
    s.add_argument("--genotype", default=None,
                   help="genotype JSON (from 'blockswap search'), reference CSV, or inline 'S,G(4),...' "
                        "(required unless --prune)")
    s.add_argument("--model", default=None,
                   help="student network (default: the genotype file's, else the teacher's)")
    s.add_argument("--prune", choices=("l1", "snip"), default=None,
                   help="instead of a genotype: the teacher's network pruned, unstructured, to --prune-params "
                        "non-zero parameters (l1: the trained teacher's smallest weights; snip: lowest "
                        "connection sensitivity at initialisation); pruned weights stay zero")
    s.add_argument("--prune-params", type=_count, default=None, metavar="N",
                   help="non-zero parameter budget of --prune, e.g. 400k")
    s.add_argument("--prune-source", default=None,
                   help="l1: the teacher run folder whose weights are pruned (default: --teacher)")
    _common(s, student=True)
    s.set_defaults(func=run_train)

    from .detect import register_train as register_detector

    register_detector(roles)


def _common(p: argparse.ArgumentParser, student: bool) -> None:
    p.add_argument("--data", required=True, help=CLASSIFICATION_DATA_HELP)
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.jsonl, record.json")
    p.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                   help="preset of every training setting (default: imagenet for imagenet data, "
                        "digits for digits, else cifar)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (same settings)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--input-size", type=positive, default=None,
                   help="input side in pixels (default 32 for WRN, 224 for ResNets)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--threads", type=positive, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    g = p.add_argument_group("training settings (default: the --recipe's value, shown per recipe)")
    helps = _field_help()
    for f in _fields(student):
        flag = _FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        text = (helps.get(f.name, "") + f" ({_recipe_defaults(f.name)})").replace("%", "%%")
        if f.type == "bool":
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.name == "amp":  # True / False; left out: the recipe's "auto"
            g.add_argument("--amp", dest="amp", action=argparse.BooleanOptionalAction, default=None,
                           help="mixed precision: bf16 autocast on CPUs with AVX512-BF16 or AMX (refused on "
                                "others), bf16 or fp16 with loss scaling on CUDA; --no-amp: float32 "
                                "(default: where the device has it natively, float32 elsewhere)")
            g.add_argument("--amp-cpu", dest="amp", action=Deprecated, new="--amp", nargs=0, const=True,
                           default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)
        else:
            kind = (non_negative if f.name in _MAY_BE_ZERO else positive) if f.type == "int" else _TYPES[f.type]
            metavar = flag[2:].replace("-", "_").upper()
            g.add_argument(flag, dest=f.name, type=kind, default=None, metavar=metavar, help=text)
            if f.name in _OLD_FLAGS:
                deprecated_alias(g, _OLD_FLAGS[f.name], flag, f.name, type=kind, metavar=metavar)


def _fields(student: bool) -> list[dataclasses.Field]:
    """The TrainConfig fields that are flags of this role (a teacher has nothing to distil)."""
    return [f for f in dataclasses.fields(TrainConfig)
            if f.name != "recipe" and (student or f.name not in _STUDENT_ONLY)]


def _recipe_defaults(name: str) -> str:
    """'default: cifar 0.1, digits 0.05, ...', the value each recipe gives a field; the loader
    workers, a runtime setting, default to the CPU count instead."""
    if name == "workers":
        return f"default: one per usable core, at most 4, here {LOADER_WORKERS}"
    values = {r: getattr(recipe(r), name) for r in sorted(RECIPES)}
    if len(set(map(str, values.values()))) == 1:
        return f"default {next(iter(values.values()))}"
    return "default: " + ", ".join(f"{r} {v}" for r, v in values.items())


def _field_help() -> dict[str, str]:
    """The comment after each TrainConfig field: one place documents both API and CLI."""
    source = inspect.getsource(TrainConfig)
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s+(\w+): [^=\n]+=[^#\n]*#(.*)$", source, re.M)}


def _config(args: argparse.Namespace) -> TrainConfig:
    name = args.recipe
    if name is None:
        data = parse_data(args.data).name
        name = data if data in RECIPES else "cifar"
    overrides = {f.name: getattr(args, f.name) for f in _fields(args.role == "student")}
    if overrides.get("workers") is None:
        overrides["workers"] = LOADER_WORKERS
    return recipe(name, **overrides)


def run_train(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise BlockSwapError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    cfg = _config(args)
    if args.role == "teacher":
        desc = parse_model(args.model, None, None, args.input_size)
        teacher = None
    else:
        teacher = args.teacher
        desc = _student_model(args)
    record = train_model(cfg, args.data, args.out, desc, teacher=teacher,
                   teacher_weights=getattr(args, "teacher_weights", None), role=args.role,
                   resume=args.resume, overwrite=args.overwrite, device=args.device,
                   progress=not args.quiet)  # None: cuda if present (per rank under torchrun), else cpu
    if int(os.environ.get("RANK", "0")) == 0 and not args.quiet:  # rank 0 of torchrun speaks
        nonzero = f", {format_count(record['nonzero_params'])} non-zero" if record.get("nonzero_params") else ""
        print(f"{record.get('role', 'network')} {record['model']['name']} ({format_count(record['params'])} params{nonzero}, "
              f"{format_count(record['macs'])} MACs): top-1 error {record['top1_error']:.2f}%, "
              f"top-5 error {record['top5_error']:.2f}%; record in {args.out}/record.json")
    return 0


def _count(text: str) -> int:
    from ..space.budget import parse_count

    try:
        value = parse_count(text)
    except BlockSwapError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole count (e.g. 400k)")
    return int(value)


def _student_model(args: argparse.Namespace) -> ModelDesc:
    """The student network: --model, else the genotype file's network, else the teacher's."""
    if args.teacher is None and args.teacher_weights is not None:
        raise BlockSwapError("--teacher-weights needs --teacher torchvision:NAME")
    if args.prune is not None:
        return _pruned_model(args)
    if args.prune_params is not None or args.prune_source is not None:
        raise BlockSwapError("--prune-params and --prune-source go with --prune l1|snip")
    if args.genotype is None:
        raise BlockSwapError("give the student: --genotype (e.g. runs/search/winner.json) or --prune l1|snip")
    network, input_size = args.model, args.input_size
    if network is None:
        try:
            network = load_genotype(args.genotype).network  # a JSON genotype names its network
        except BlockSwapError:
            network = None  # inline text or a CSV: it does not (a bad file fails below)
    if args.teacher is not None:
        arch = torchvision_arch(str(args.teacher))
        if arch is not None:
            network = network or arch
        else:
            teacher_model = load_checkpoint(args.teacher)["model"]
            if network is None and teacher_model.get("kind") == "blockswap":
                network = teacher_model["name"]
            input_size = input_size or teacher_model.get("input_size")
    if network is None:
        raise BlockSwapError("cannot tell the student network: give --model (e.g. wrn-40-2), "
                             "a genotype JSON file, or --teacher")
    geno = load_genotype(args.genotype, network)
    return parse_model(network, geno.text, None, input_size)


def _pruned_model(args: argparse.Namespace) -> ModelDesc:
    """The teacher's network, pruned (paper Appendix C): its network and input size from --teacher."""
    if args.genotype is not None:
        raise BlockSwapError("--prune prunes the teacher's network; leave --genotype out")
    if args.prune_params is None:
        raise BlockSwapError("--prune needs --prune-params, the budget of non-zero parameters (e.g. 400k)")
    source = args.prune_source or (args.teacher if args.prune == "l1" else None)
    if args.prune == "l1" and (source is None or is_torchvision(str(source))):
        raise BlockSwapError("--prune l1 prunes a trained teacher: give --teacher (or --prune-source) a run "
                             "folder of 'blockswap train teacher'")
    if args.prune == "snip" and args.prune_source is not None:
        raise BlockSwapError("--prune snip prunes at initialisation; --prune-source goes with l1")
    network, input_size = args.model, args.input_size
    reference = source or args.teacher
    if reference is not None and not is_torchvision(str(reference)):
        teacher_model = load_checkpoint(reference)["model"]
        network = network or teacher_model["name"]
        input_size = input_size or teacher_model.get("input_size")
    if network is None:
        raise BlockSwapError("cannot tell the network to prune: give --model (e.g. wrn-40-2) or --teacher")
    return ModelDesc("blockswap", network, None, None, input_size, prune=args.prune,
                     prune_params=args.prune_params, prune_source=None if source is None else str(source))
