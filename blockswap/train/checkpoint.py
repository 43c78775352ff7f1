"""Checkpoints and run records: their formats, and loading a trained network back.

A checkpoint holds the model description, weights, optimizer, scheduler, RNG states and history;
written atomically after every epoch, so an interrupted run resumes exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BlockSwapError
from ..files import FileFormat
from ..outdir import RunFolder
from ..nn.teacher import build_teacher
from ..space.refs import TeacherRef, parse_teacher
from .models import ModelDesc

RUN_RECORD = FileFormat("blockswap.run", 1, "BlockSwap run record")  # record.json of a finished run (read by report)
CHECKPOINT = FileFormat("blockswap.checkpoint", 1, "BlockSwap checkpoint")
CHECKPOINT_NAME = "checkpoint.pt"
# A run folder: a resume continues from its checkpoint; all three files are results of the run.
TRAIN_FOLDER = RunFolder("training run", CHECKPOINT_NAME, (CHECKPOINT_NAME, "metrics.jsonl", "record.json"))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    kind: FileFormat = CHECKPOINT, writer: str = "blockswap train",
                    hint: str = "; for torchvision weights use torchvision:NAME with a weights file") -> dict[str, Any]:
    """Read a BlockSwap checkpoint (a file, or a run folder holding ``checkpoint.pt``).

    `kind` is the expected format (a detector's is another), `writer` the command that writes
    it and `hint` what a file of another format may be, both for the error messages.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise BlockSwapError(f"checkpoint {str(path)!r} does not exist; expected a file written by "
                             f"'{writer}' (or its run folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        first = (str(exc).splitlines() or [""])[0][:120]
        raise BlockSwapError(f"cannot read checkpoint {str(path)!r}: expected a torch file written by "
                             f"'{writer}' ({type(exc).__name__}: {first})") from None
    kind.check(state, repr(str(path)), hint)
    return state


def load_model(source: "str | Path | TeacherRef", weights: str | Path | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, ModelDesc]:
    """A trained network in eval mode and its description, from a checkpoint or torchvision.

    `source`: a checkpoint file or run folder written by `train`, or ``torchvision:NAME``
    (resnet18/resnet34) with ImageNet weights from the local file `weights` (never downloaded),
    or a `TeacherRef` of either kind.
    """
    ref = parse_teacher(source, weights)
    text = ref.text
    if ref.kind == "module":
        raise BlockSwapError(f"teacher {text}: a module teacher is the nn.Module itself; there is no file to load")
    if ref.kind == "torchvision":
        name = ModelDesc("torchvision", ref.source).name  # checks the name
        if ref.weights is None:
            raise BlockSwapError(f"{text} needs its weights file (e.g. resnet34-b627a593.pth from torchvision, "
                                 "or a state dict of your fine-tuned copy); nothing is downloaded")
        net = build_teacher(name, ref.weights)  # classes: the weights' classifier's
        classes = [m for m in net.modules() if isinstance(m, nn.Linear)][-1].out_features
        desc = ModelDesc("torchvision", name, None, classes, 224)
    else:
        state = load_checkpoint(text, "cpu")
        try:
            desc = ModelDesc(**state["model"])
            net = desc.build()
            net.load_state_dict(state["state_dict"])
        except (KeyError, TypeError, RuntimeError) as exc:
            raise BlockSwapError(f"checkpoint {text!r} does not hold a network it can rebuild: "
                                 f"{str(exc).splitlines()[0]}") from None
    return net.to(device).eval(), desc
