"""Training a Mask R-CNN with a BlockSwap backbone on COCO-layout data (paper Sec. 7).

The paper trains with "the default Mask R-CNN settings in Torchvision", from scratch, without
distillation; `DetectorConfig`'s defaults are torchvision's detection reference (SGD, 0.02 for
a minibatch of 16, momentum 0.9, weight decay 1e-4, 26 epochs with steps at 16 and 22, a linear
warm-up over the first 1000 iterations, horizontal flips). The output folder receives after
every epoch ``checkpoint.pt`` (written atomically) and ``metrics.jsonl`` (losses and COCO AP of
the validation split), and at the end ``record.json``; the loop is `loop.run`, shared
with classification.

Exact resume: every epoch starts from seeds derived from (run seed, epoch): the data order,
the flips, and torch's global generator (the RPN and RoI samplers draw from it), and the
learning rate is a function of (epoch, step). A run resumed after epoch k therefore trains
epochs k+1.. exactly as the uninterrupted run. Data parallel under torchrun as `train_model`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data.coco import CocoSplit
from ..data.spec import DataSpec, parse_data
from ..errors import BlockSwapError
from ..files import FileFormat, versions
from ..nn.detection import build_detector
from ..space.detection import DETECTION_BATCH, DETECTION_MIN_SIZE, max_size_for
from ..outdir import RunFolder
from ..seeding import derive_seed, torch_seed
from ..space.costs import network_cost
from ..space.genotype import as_genotype
from ..space.networks import network_spec
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .coco_eval import evaluate_detector
from .loop import TRAIN_TASKS, fit
from .state import TrainState, wrap_ddp

DETECTOR_CHECKPOINT = FileFormat("blockswap.detector-checkpoint", 1, "BlockSwap detector checkpoint")
DETECTOR_RECORD = FileFormat("blockswap.detector-run", 1, "BlockSwap detector run record")
DETECTOR_FOLDER = RunFolder("detector training run", CHECKPOINT_NAME, (CHECKPOINT_NAME, "metrics.jsonl", "record.json"))


# Fields that may change on resume: they do not change the epochs already run (the rate is a
# function of the epoch, not of the run's length), so a finished run can be extended.
DETECTOR_RUNTIME_FIELDS = frozenset({"epochs", "workers", "eval_batch_size"})
DETECTOR_STAGES = 4  # torchvision's anchor generator: one anchor size per FPN level, 4 levels + pool


@dataclass(frozen=True)
class DetectorConfig:
    """A detector run: torchvision's Mask R-CNN reference recipe unless overridden."""

    epochs: int = 26
    batch_size: int = DETECTION_BATCH  # global minibatch (the paper: 16 over 8 GPUs)
    lr: float = 0.02  # for 16 images; torchvision's reference scales it linearly with the batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[int, ...] = (16, 22)  # epochs after which the rate is multiplied by lr_gamma
    lr_gamma: float = 0.1
    warmup_iters: int = 1000  # first epoch only: linear from warmup_factor * lr
    warmup_factor: float = 1e-3
    min_size: int = DETECTION_MIN_SIZE  # shorter image side after the detector's resize (torchvision: 800)
    max_size: int | None = None  # longer side at most (None: 1333/800 of min_size)
    rois_per_image: int = 512  # RoIs sampled per image for the box head (torchvision: 512)
    hflip: float = 0.5  # probability of a horizontal flip per training image
    skip_bad_boxes: bool = False  # leave degenerate boxes out instead of refusing the data
    seed: int = 0
    workers: int = 2  # image-decoding processes
    eval_batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "min_size", "rois_per_image", "eval_batch_size"):
            _integer(name, getattr(self, name), 1)
        for name in ("warmup_iters", "seed", "workers"):
            _integer(name, getattr(self, name), 0)
        _number("lr", self.lr, "a positive number", lambda v: v > 0)
        _number("momentum", self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)
        _number("weight_decay", self.weight_decay, "a number >= 0", lambda v: v >= 0)
        _number("lr_gamma", self.lr_gamma, "a factor in (0, 1]", lambda v: 0 < v <= 1)
        _number("warmup_factor", self.warmup_factor, "a factor in [0, 1]", lambda v: 0 <= v <= 1)
        _number("hflip", self.hflip, "a probability in [0, 1]", lambda v: 0 <= v <= 1)
        if not isinstance(self.lr_steps, (tuple, list)):
            raise BlockSwapError(f"lr_steps must be a tuple of epochs, got {self.lr_steps!r}")
        for step in self.lr_steps:
            _integer("lr_steps", step, 1)
        object.__setattr__(self, "lr_steps", tuple(self.lr_steps))
        if not isinstance(self.skip_bad_boxes, bool):
            raise BlockSwapError(f"skip_bad_boxes must be True or False, got {self.skip_bad_boxes!r}")
        if self.max_size is not None:
            _integer("max_size", self.max_size, 1)
            if self.max_size < self.min_size:
                raise BlockSwapError(f"max_size {self.max_size} is below min_size {self.min_size}")

    @property
    def runtime(self) -> frozenset[str]:
        """Deprecated name of `DETECTOR_RUNTIME_FIELDS`."""
        return DETECTOR_RUNTIME_FIELDS

    def lr_at(self, epoch: int, step: int) -> float:
        """Learning rate of `step` (0-based) of `epoch` (0-based), steps-per-epoch independent."""
        lr = self.lr * self.lr_gamma ** sum(epoch >= m for m in self.lr_steps)
        if epoch == 0 and step < self.warmup_iters:
            lr *= self.warmup_factor + (1 - self.warmup_factor) * step / self.warmup_iters
        return lr

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lr_steps"] = list(self.lr_steps)
        return d


def _integer(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        what = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise BlockSwapError(f"{name} must be {what}, got {value!r}")


def _number(name: str, value: Any, what: str, ok: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise BlockSwapError(f"{name} must be {what}, got {value!r}")


def check_backbone(network: str) -> None:
    """Refuse up front a backbone the detector cannot take: torchvision's anchors pair one size
    with each of the FPN's levels, built here for networks of 4 stages (ResNets)."""
    spec = network_spec(network)
    if len(spec.depths) != DETECTOR_STAGES:
        raise BlockSwapError(f"a detector backbone needs a network with {DETECTOR_STAGES} stages (resnet18, "
                             f"resnet34, torchvision:resnet50, ...); {spec.name} has {len(spec.depths)}")


def detector_desc(network: str, genotype, num_classes: int, cfg: DetectorConfig) -> dict[str, Any]:
    """What `build_detector` needs to rebuild the network (stored in checkpoints)."""
    check_backbone(network)
    spec = network_spec(network)
    geno = as_genotype(genotype, spec)  # None: the standard genotype
    return {"task": "detection", "network": spec.name, "genotype": geno.text, "num_classes": num_classes,
            "min_size": cfg.min_size, "max_size": cfg.max_size or max_size_for(cfg.min_size),
            "rois_per_image": cfg.rois_per_image}


def build_from_desc(desc: dict[str, Any]) -> nn.Module:
    model = build_detector(desc["network"], desc["genotype"], desc["num_classes"],
                           min_size=desc["min_size"], max_size=desc["max_size"])
    model.roi_heads.fg_bg_sampler.batch_size_per_image = desc["rois_per_image"]
    return model


def backbone_cost(desc: dict[str, Any]) -> dict[str, int]:
    """Parameters and MACs (at min_size x min_size) of the backbone, and the whole detector's
    parameters (FPN and heads are the same for every genotype)."""
    cost = network_cost(network_spec(desc["network"]).backbone(), desc["genotype"], desc["min_size"])
    with torch_seed(0):
        total = sum(p.numel() for p in build_from_desc(desc).parameters())
    return {"backbone_params": cost.params, "backbone_macs": cost.macs, "detector_params": total}


def train_detector(config: DetectorConfig, data: "str | DataSpec", out: "str | Path", *,
                   network: str = "resnet34", genotype=None, resume: bool = False, overwrite: bool = False,
                   device: str | None = None, progress: bool = True, progress_bar: bool | None = None,
                   on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train a Mask R-CNN whose backbone is `network` with `genotype` on COCO-layout `data`.

    `resume`, `overwrite`, `progress`, `on_epoch_end`: `loop.fit` (`progress_bar` is the old,
    deprecated name of `progress`). Returns the run record (also ``out/record.json``)."""
    if progress_bar is not None:
        warnings.warn("train_detector(progress_bar=...) is deprecated; use progress=...", DeprecationWarning,
                      stacklevel=2)
        progress = progress_bar
    spec = parse_data(data)
    if spec.task != "detection":
        raise BlockSwapError(f"a detector trains on COCO-layout data (coco:PATH), not {spec}")
    check_backbone(network)
    return fit("detection", config, spec, out, resume=resume, overwrite=overwrite, device=device,
               progress=progress, on_epoch_end=on_epoch_end, network=network, genotype=genotype)


@TRAIN_TASKS.register("detection")
class Detection:
    """Per-task pieces of a detector's run (`loop.run` calls them).

    Exact resume: every epoch starts from seeds derived from (run seed, epoch), and the rate is
    a function of (epoch, step), so no generator state needs to be carried across epochs."""

    folder = DETECTOR_FOLDER
    writer, hint = "blockswap train detector", "; it is not a detector checkpoint ('blockswap train detector')"

    def __init__(self, cfg: DetectorConfig, data: DataSpec, dist, *, network: str, genotype):
        self.cfg, self.dist = cfg, dist
        dev = dist.device
        self.train_split = CocoSplit(data.path, "train", dev, cfg.workers, cfg.skip_bad_boxes)
        self.val_split = CocoSplit(data.path, "val", dev, cfg.workers, cfg.skip_bad_boxes)
        if self.val_split.cat_ids != self.train_split.cat_ids:
            raise BlockSwapError(f"coco: train and val declare different categories in {data.path!r}")
        if cfg.batch_size % dist.world_size:
            raise BlockSwapError(f"batch size {cfg.batch_size} does not split over {dist.world_size} processes")
        self.train_split.check_batch_size(cfg.batch_size, f"training split of {data}")
        self.desc = desc = detector_desc(network, genotype, self.train_split.num_classes, cfg)
        with torch_seed(derive_seed(cfg.seed, "init")):
            self.model = model = build_from_desc(desc)
        model.to(dev)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        identity = {"role": "detector", "model": desc, "data": str(data), "config": cfg.to_dict()}
        self.state = TrainState(model, optimizer, identity, DETECTOR_CHECKPOINT, DETECTOR_RUNTIME_FIELDS,
                                lr_at=cfg.lr_at)
        # Unused parameters: the mask head gets no gradient in a step without a positive RoI.
        self.train_net = wrap_ddp(model, dist.world_size, find_unused_parameters=True)
        self.epochs = cfg.epochs
        self.steps_per_epoch = math.ceil(len(self.train_split) / cfg.batch_size)

    def resumed(self) -> None:
        pass

    def train(self) -> None:
        self.train_net.train()

    def batches(self, epoch: int):
        cfg = self.cfg
        torch.manual_seed(derive_seed(cfg.seed, "detector", "sampling", epoch))  # RPN / RoI samplers
        generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "data", epoch))
        return self.train_split.batches(cfg.batch_size, shuffle=True, hflip=cfg.hflip, generator=generator,
                                        rank=self.dist.rank, world_size=self.dist.world_size,
                                        pad_last=self.dist.world_size > 1)

    @staticmethod
    def batch_len(batch) -> int:
        return len(batch[1])

    def step(self, batch) -> dict[str, torch.Tensor]:
        images, targets = batch
        losses = self.train_net(images, targets)  # loss_classifier, loss_box_reg, loss_mask, ...
        return {"loss": sum(losses.values()), **losses}

    def after_step(self) -> None:
        pass

    def before_evaluation(self) -> None:
        if self.dist.world_size > 1:  # each rank updated BN running statistics on its own images:
            for buf in self.model.buffers():  # evaluate (and save) rank 0's, on every rank
                torch.distributed.broadcast(buf, 0)

    def evaluate(self) -> dict[str, Any]:
        return evaluate_detector(self.model, self.val_split, self.cfg.eval_batch_size, self.dist)

    @staticmethod
    def summary(row: dict[str, Any]) -> str:
        parts = ", ".join(f"{k[11:]} {v:.4f}" for k, v in row.items() if k.startswith("train_loss_"))
        return (f"epoch {row['epoch']}: lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} ({parts})  "
                f"box AP {_pct(row.get('val_bbox_AP'))}  mask AP {_pct(row.get('val_segm_AP'))}  "
                f"{row['train_img_per_s']:.2f} img/s")

    def record(self) -> dict[str, Any]:
        history, cfg = self.state.history, self.cfg
        last = history[-1] if history else {}
        return {**DETECTOR_RECORD.stamp(), **self.state.identity, "genotype": self.desc["genotype"],
                **backbone_cost(self.desc), **{k[4:]: v for k, v in last.items() if k.startswith("val_")},
                "epochs_done": len(history), "seeds": {"run": cfg.seed, "init": derive_seed(cfg.seed, "init")},
                "world_size": self.dist.world_size, "device": str(self.dist.device), "versions": versions(),
                "history": history}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _load(path: "str | Path", device) -> dict[str, Any]:
    return load_checkpoint(path, device, kind=DETECTOR_CHECKPOINT, writer="blockswap train detector",
                           hint="; it is not a detector checkpoint ('blockswap train detector')")


def load_detector(path: "str | Path", device="cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A trained detector in eval mode and its checkpoint (a file or run folder)."""
    state = _load(path, device)
    with torch_seed(0):
        model = build_from_desc(state["model"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval(), state
