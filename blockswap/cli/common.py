"""Help strings and argument types shared by several commands."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..data.spec import DATASETS
from ..devices import usable_cpus

# Generated from the dataset table (data/spec.py): a new entry there shows here.
DATA_HELP = "; ".join(f"{e.form}: {e.help}" for e in DATASETS.values())
# Classification commands (train teacher/student): the detection-only entries left out.
CLASSIFICATION_DATA_HELP = "; ".join(f"{e.form}: {e.help}" for e in DATASETS.values()
                                     if e.task == "classification")
DEVICE_HELP = "cpu, cuda, cuda:1 (default: cuda if present, else cpu)"
TORCHVISION_WEIGHTS_HELP = ("local weights file (state dict) of a torchvision:NAME network, e.g. "
                            "resnet34-b627a593.pth; nothing is downloaded (default: none)")
QUIET_HELP = "print nothing but errors (and --json's object): no progress, notes or summary"
# Loader processes for ImageNet folders: one per usable core, at most 4 (each holds decoded
# images); on 2 cores PyTorch warns above 2.
LOADER_WORKERS = max(0, min(4, usable_cpus()))


def default_device(device: str | None) -> str:
    """The one --device rule of every command: the given device, else cuda if present, else cpu."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Deprecated(argparse.Action):
    """An old spelling kept for one version: stores into the new flag's dest and says so once,
    as one line on stderr. Register with ``deprecated_alias(parser, "--old", "--new", dest)``."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated, use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)  # nargs=0: a switch


def deprecated_alias(parser, old: str, new: str, dest: str, **kwargs) -> None:
    """`old` as a hidden alias of `new` (same dest and type); help is suppressed."""
    parser.add_argument(old, dest=dest, action=Deprecated, new=new, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **kwargs)
OVERWRITE_HELP = "delete the results already in --out and start again (default: refuse such a folder)"


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, else argparse's one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}; give an integer >= {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def integers(minimum: int) -> Callable[[str], tuple[int, ...]]:
    """An argparse type: comma-separated integers, each >= `minimum` (e.g. batch sizes '1,64')."""
    one = integer(minimum)

    def parse(text: str) -> tuple[int, ...]:
        values = tuple(one(v) for v in text.split(",") if v.strip())
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r} holds no integer; e.g. 1,64")
        return values

    parse.__name__ = f"comma-separated integers >= {minimum}"
    return parse


positive = integer(1)  # counts: samples, workers, threads, batch sizes, rows, epochs
non_negative = integer(0)  # seeds


def network_from_args(checkpoint: str | None, weights: str | None, model: str | None, genotype: str | None,
                      input_size: int | None = None):
    """(network in eval mode on the CPU, its ModelDesc) from ``--checkpoint RUN`` (trained, or
    ``torchvision:NAME`` with ``--weights``) or ``--model M [--genotype G]`` (untrained, seeded)."""
    from ..errors import BlockSwapError
    from ..space.genotype import load_genotype
    from ..train import init_model, load_model, parse_model

    if (checkpoint is None) == (model is None):
        raise BlockSwapError("give the network as --checkpoint RUN, or as --model M [--genotype G] (untrained)")
    if checkpoint is not None:
        if genotype is not None:
            raise BlockSwapError("--genotype goes with --model; a checkpoint holds its genotype")
        return load_model(checkpoint, weights, "cpu")
    geno = load_genotype(genotype, model) if genotype else None
    desc = parse_model(model, None if geno is None else geno.text, None, input_size)
    return init_model(desc, 0).eval(), desc  # seeded: the same untrained weights every run

