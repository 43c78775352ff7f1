"""Training a Mask R-CNN with a BlockSwap backbone on COCO-layout data (paper Sec. 7).

The paper trains with "the default Mask R-CNN settings in Torchvision", from scratch, without
distillation; `DetectorConfig`'s defaults are torchvision's detection reference (SGD, 0.02 for
a minibatch of 16, momentum 0.9, weight decay 1e-4, 26 epochs with steps at 16 and 22, a linear
warm-up over the first 1000 iterations, horizontal flips). The output folder receives after
every epoch ``checkpoint.pt`` (written atomically) and ``metrics.jsonl`` (losses and COCO AP of
the validation split), and at the end ``record.json``.

Exact resume: every epoch starts from seeds derived from (run seed, epoch): the data order,
the flips, and torch's global generator (the RPN and RoI samplers draw from it), and the
learning rate is a function of (epoch, step). A run resumed after epoch k therefore trains
epochs k+1.. exactly as the uninterrupted run. Data parallel under torchrun as `train_model`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.coco import CocoSplit
from ..data.spec import DataSpec, parse_data
from ..errors import BlockSwapError
from ..files import FileFormat, atomic_torch_save, atomic_write_json, atomic_write_text, dumps, versions
from ..nn.detection import build_detector, max_size_for
from ..outdir import RunFolder, claim_folder
from ..progress import progress
from ..seeding import derive_seed, torch_seed
from ..space.costs import network_cost
from ..space.genotype import Genotype, as_genotype
from ..space.networks import network_spec
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .coco_eval import evaluate_detector
from .distributed import setup_distributed

DETECTOR_CHECKPOINT = FileFormat("blockswap.detector-checkpoint", 1, "BlockSwap detector checkpoint")
DETECTOR_RECORD = FileFormat("blockswap.detector-run", 1, "BlockSwap detector run record")
DETECTOR_FOLDER = RunFolder("detector training run", CHECKPOINT_NAME, (CHECKPOINT_NAME, "metrics.jsonl", "record.json"))


@dataclass(frozen=True)
class DetectorConfig:
    """A detector run: torchvision's Mask R-CNN reference recipe unless overridden."""

    epochs: int = 26
    batch_size: int = 16  # global minibatch (the paper: 16 over 8 GPUs)
    lr: float = 0.02  # for 16 images; torchvision's reference scales it linearly with the batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[int, ...] = (16, 22)  # epochs after which the rate is multiplied by lr_gamma
    lr_gamma: float = 0.1
    warmup_iters: int = 1000  # first epoch only: linear from warmup_factor * lr
    warmup_factor: float = 1e-3
    min_size: int = 800  # shorter image side after the detector's resize (torchvision: 800)
    max_size: int | None = None  # longer side at most (None: 1333/800 of min_size)
    rois_per_image: int = 512  # RoIs sampled per image for the box head (torchvision: 512)
    hflip: float = 0.5  # probability of a horizontal flip per training image
    skip_bad_boxes: bool = False  # leave degenerate boxes out instead of refusing the data
    seed: int = 0
    workers: int = 2  # image-decoding processes
    eval_batch_size: int = 8
    # Fields that may change on resume: they do not change the epochs already run (the rate is a
    # function of the epoch, not of the run's length), so a finished run can be extended.
    runtime: tuple[str, ...] = field(default=("epochs", "workers", "eval_batch_size"), repr=False)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "min_size", "rois_per_image", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BlockSwapError(f"{name} must be a positive integer, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BlockSwapError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.hflip <= 1:
            raise BlockSwapError(f"hflip must be a probability in [0, 1], got {self.hflip!r}")
        if self.max_size is not None and self.max_size < self.min_size:
            raise BlockSwapError(f"max_size {self.max_size} is below min_size {self.min_size}")

    def lr_at(self, epoch: int, step: int) -> float:
        """Learning rate of `step` (0-based) of `epoch` (0-based), steps-per-epoch independent."""
        lr = self.lr * self.lr_gamma ** sum(epoch >= m for m in self.lr_steps)
        if epoch == 0 and step < self.warmup_iters:
            lr *= self.warmup_factor + (1 - self.warmup_factor) * step / self.warmup_iters
        return lr

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("runtime")
        d["lr_steps"] = list(self.lr_steps)
        return d


def detector_desc(network: str, genotype, num_classes: int, cfg: DetectorConfig) -> dict[str, Any]:
    """What `build_detector` needs to rebuild the network (stored in checkpoints)."""
    spec = network_spec(network)
    geno = Genotype.standard(spec.name) if genotype is None else as_genotype(genotype, spec.name)
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
                   device: str | None = None, progress_bar: bool = True) -> dict[str, Any]:
    """Train a Mask R-CNN whose backbone is `network` with `genotype` on COCO-layout `data`.

    Returns the run record (also ``out/record.json``)."""
    spec = parse_data(data)
    if spec.name != "coco":
        raise BlockSwapError(f"a detector trains on COCO-layout data (coco:PATH), not {spec}")
    dist = setup_distributed(device)
    try:
        with claim_folder(out, DETECTOR_FOLDER, resume=resume, overwrite=overwrite, enabled=dist.is_main) as out:
            return _train(config, spec, out, network, genotype, dist, progress_bar and dist.is_main)
    finally:
        dist.close()


def _train(cfg: DetectorConfig, data: DataSpec, out: Path, network, genotype, dist, show) -> dict[str, Any]:
    dev = dist.device
    train_split = CocoSplit(data.path, "train", dev, cfg.workers, cfg.skip_bad_boxes)
    val_split = CocoSplit(data.path, "val", dev, cfg.workers, cfg.skip_bad_boxes)
    if val_split.cat_ids != train_split.cat_ids:
        raise BlockSwapError(f"coco: train and val declare different categories in {data.path!r}")
    if cfg.batch_size % dist.world_size:
        raise BlockSwapError(f"batch size {cfg.batch_size} does not split over {dist.world_size} processes")
    train_split.check_batch_size(cfg.batch_size, f"training split of {data}")
    desc = detector_desc(network, genotype, train_split.num_classes, cfg)
    with torch_seed(derive_seed(cfg.seed, "init")):
        model = build_from_desc(desc)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    identity = {"role": "detector", "model": desc, "data": str(data), "config": cfg.to_dict()}

    ckpt, history, start = out / CHECKPOINT_NAME, [], 0
    if ckpt.exists():
        state = _load(ckpt, dev)
        _check_same(state, identity, ckpt, cfg)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        history, start = list(state["history"]), int(state["epoch"])
        if show:
            print(f"resuming {str(ckpt)!r} after epoch {start}/{cfg.epochs}", file=sys.stderr)
    # Unused parameters: the mask head gets no gradient in a step without a positive RoI.
    train_net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) \
        if dist.world_size > 1 else model
    steps = math.ceil(len(train_split) / cfg.batch_size)
    for epoch in range(start, cfg.epochs):
        tick = time.perf_counter()
        torch.manual_seed(derive_seed(cfg.seed, "detector", "sampling", epoch))  # RPN / RoI samplers
        generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "data", epoch))
        train_net.train()
        sums: dict[str, float] = {}
        bar = progress(steps, f"epoch {epoch + 1}/{cfg.epochs}", "step", enabled=show, leave=False)
        for step, (images, targets) in enumerate(train_split.batches(
                cfg.batch_size, shuffle=True, hflip=cfg.hflip, generator=generator,
                rank=dist.rank, world_size=dist.world_size, pad_last=dist.world_size > 1)):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at(epoch, step)
            losses = train_net(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(dist.all_sum(loss.detach().clone())):
                raise BlockSwapError(f"training diverged (epoch {epoch + 1}, step {step + 1}): loss {loss.item()}; "
                                     f"the last good checkpoint stays in {str(out)!r}; lower --lr (now {cfg.lr:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}", refresh=False)  # redraws at the bar's pace
        bar.close()
        seconds = time.perf_counter() - tick
        if dist.world_size > 1:  # each rank updated BN running statistics on its own images:
            for buf in model.buffers():  # evaluate (and save) rank 0's, on every rank
                torch.distributed.broadcast(buf, 0)
        val = evaluate_detector(model, val_split, cfg.eval_batch_size, dist)
        row = {"epoch": epoch + 1, "lr": cfg.lr_at(epoch, steps - 1),  # after any warm-up **{f"train_{k}": v / steps for k, v in sums.items()},
               **{f"val_{k}": v for k, v in val.items()}, "train_seconds": seconds,
               "train_img_per_s": len(train_split) / seconds, "seconds": time.perf_counter() - tick}
        history.append(row)
        if dist.is_main:
            atomic_torch_save(ckpt, {**DETECTOR_CHECKPOINT.stamp(), **identity, "epoch": epoch + 1,
                                     "history": history, "state_dict": model.state_dict(),
                                     "optimizer": optimizer.state_dict(),
                                     "versions": {k: str(v) for k, v in versions().items()}})
            atomic_write_text(out / "metrics.jsonl", "".join(dumps(r) + "\n" for r in history))
            if show:
                print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f}  box AP {_pct(val['bbox_AP'])}  "
                      f"mask AP {_pct(val['segm_AP'])}  {row['train_img_per_s']:.2f} img/s", flush=True)
    last = history[-1] if history else {}
    record = {**DETECTOR_RECORD.stamp(), **identity, "genotype": desc["genotype"], **backbone_cost(desc),
              **{k[4:]: v for k, v in last.items() if k.startswith("val_")},
              "epochs_done": len(history), "seeds": {"run": cfg.seed, "init": derive_seed(cfg.seed, "init")},
              "world_size": dist.world_size, "device": str(dev), "versions": versions(), "history": history}
    if dist.is_main:
        atomic_write_json(out / "record.json", record)
    return record


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


def _check_same(state: dict[str, Any], identity: dict[str, Any], path: Path, cfg: DetectorConfig) -> None:
    for key in ("model", "data"):
        if state.get(key) != identity[key]:
            raise BlockSwapError(f"cannot resume {str(path)!r}: it was a run with {key} {state.get(key)!r}, "
                                 f"not {identity[key]!r}")
    old = state.get("config", {})
    changed = [k for k, v in identity["config"].items() if k not in cfg.runtime and old.get(k) != v]
    if changed:
        raise BlockSwapError(f"cannot resume {str(path)!r}: it was started with "
                             + ", ".join(f"{k}={old.get(k)!r}" for k in changed)
                             + "; now " + ", ".join(f"{k}={identity['config'][k]!r}" for k in changed)
                             + "; use the same settings")
