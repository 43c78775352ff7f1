"""Training teachers and students: one loop, named recipes, exact resume, data parallel.

A teacher trains with cross-entropy; a student adds attention transfer from a frozen teacher
(paper Sec. 3.2; `distill.at_loss`) and optionally Hinton KD. Everything a run needs is a
`TrainConfig` (a recipe preset plus overrides), a dataset name, a `ModelDesc` and an output
folder, which receives after every epoch

* ``checkpoint.pt``: model, optimizer, scheduler, grad scaler, epoch, RNG states, history,
  written atomically, so ``resume=True`` continues exactly where an interrupted run stopped
  (on CPU the resumed run's metrics equal an uninterrupted run's bit for bit);
* ``metrics.jsonl``: one JSON object per finished epoch;

and at the end ``record.json`` (config, genotype, params, MACs, top-1/top-5 error, seeds,
versions). Randomness flows from ``config.seed`` alone: one derived seed initialises the model,
one `torch.Generator` orders the data and draws every augmentation.

Data parallel: started under ``torchrun --nproc_per_node=N`` (or inside an initialised
process group) the loop wraps the model in DDP; ``batch_size`` stays the global minibatch and
each process takes its slice (`data.shard_batches`); only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .cost import cost
from .data import Augment, DataSpec, load_split, parse_data
from .distill import at_loss, kd_loss
from .errors import BlockSwapError, choices
from .files import atomic_torch_save, atomic_write_json, atomic_write_text, versions
from .models import TEACHERS, build_model, build_teacher, network_spec
from .seeding import seed_from, torch_seed

SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Defaults: the paper's CIFAR recipe (Sec. 5)."""

    recipe: str = "cifar"  # name of the preset these values started from (recorded only)
    epochs: int = 200  # passes over the training set
    batch_size: int = 128  # images per optimiser step, summed over all data-parallel processes
    lr: float = 0.1  # initial learning rate
    momentum: float = 0.9  # SGD momentum (plain, not Nesterov, as the authors)
    weight_decay: float = 5e-4  # L2 penalty on every parameter, BN included (the authors' SGD)
    schedule: str = "cosine"  # "cosine": annealed to 0 over all epochs; "step": x step_gamma every step_epochs
    step_epochs: int = 30  # epochs between learning-rate drops of the "step" schedule
    step_gamma: float = 0.1  # factor of each drop of the "step" schedule
    augment: bool = True  # CIFAR-style crop+flip+Cutout (ImageNet: RandomResizedCrop+flip)
    crop_pad: int = 4  # pixels of black padding per side before the random crop
    flip: bool = True  # random horizontal flips
    cutout: int = 16  # side of the Cutout hole in pixels; 0 disables Cutout
    beta: float = 1000.0  # attention-transfer weight (paper: 1000 CIFAR, 750 ImageNet); students only
    kd_weight: float = 0.0  # Hinton KD mixing weight in [0, 1]; 0 disables KD; students only
    kd_temperature: float = 4.0  # KD softmax temperature
    seed: int = 0  # the one seed all randomness derives from (model init, data order, augmentation)
    eval_batch_size: int = 500  # images per evaluation step (no effect on results)
    workers: int = 4  # ImageNet loader processes per training process (no effect on results)
    amp: bool = True  # mixed precision on CUDA (bf16, or fp16 with loss scaling); ignored on CPU
    channels_last: bool = True  # NHWC memory format on CUDA; ignored on CPU

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "step_epochs": self.step_epochs, "kd_temperature": self.kd_temperature,
                    "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if not value > 0:
                raise BlockSwapError(f"{name} must be positive, got {value!r}")
        for name in ("momentum", "weight_decay", "beta", "crop_pad", "cutout", "workers"):
            if getattr(self, name) < 0:
                raise BlockSwapError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.schedule not in SCHEDULES:
            raise BlockSwapError(f"unknown schedule {self.schedule!r}; valid schedules: {choices(SCHEDULES)}")
        if not 0 <= self.kd_weight <= 1:
            raise BlockSwapError(f"kd_weight must be in [0, 1], got {self.kd_weight!r}")

    @property
    def augmentation(self) -> Augment | None:
        return Augment(self.crop_pad, self.flip, self.cutout) if self.augment else None


# Fields that may differ when a run resumes: they change speed or memory, never the numbers.
RUNTIME_FIELDS = frozenset({"eval_batch_size", "workers"})

_CIFAR = TrainConfig()
RECIPES: dict[str, TrainConfig] = {
    # Paper Sec. 5: 200 epochs, SGD 0.9, lr 0.1 cosine to 0, batch 128, wd 5e-4, crop+flip+Cutout.
    "cifar": _CIFAR,
    # Paper Sec. 6: 100 epochs, lr 0.1 divided by 10 every 30 epochs, batch 256, wd 1e-4, AT beta 750.
    "imagenet": replace(_CIFAR, recipe="imagenet", epochs=100, batch_size=256, weight_decay=1e-4,
                        schedule="step", step_epochs=30, step_gamma=0.1, beta=750.0),
    # Not in the paper: the CIFAR recipe shortened so a WRN-16-2 on the bundled digits trains
    # in minutes on a CPU (README, "Results we measured").
    "digits": replace(_CIFAR, recipe="digits", epochs=30),
}


def recipe(name: str = "cifar", **overrides: Any) -> TrainConfig:
    """The preset `name` with fields replaced by `overrides` (None values are ignored)."""
    if name not in RECIPES:
        raise BlockSwapError(f"unknown recipe {name!r}; valid recipes: {choices(RECIPES)}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"recipe"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise BlockSwapError(f"unknown training setting {unknown[0]!r}; valid settings: {choices(sorted(fields))}")
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})


def run_seeds(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for each random stream of a run, derived from its one seed."""
    return {stream: seed_from(f"blockswap:{seed}:{stream}") for stream in ("init", "data")}


# --------------------------------------------------------------------------------------------
# Models: what a checkpoint needs to rebuild its network
# --------------------------------------------------------------------------------------------

KINDS = ("blockswap", "torchvision")


@dataclass(frozen=True)
class ModelDesc:
    """A network that can be rebuilt from its description alone.

    ``kind="blockswap"``: `name` is ``wrn-D-k``/``resnet18``/``resnet34`` and `genotype` its
    block types (None: all standard); ``kind="torchvision"``: torchvision's post-activation
    ``resnet18``/``resnet34`` (the paper's ImageNet teacher). `num_classes` / `input_size`
    None mean "from the data" / "the network's default" (32 for WRN, 224 for ResNets).
    """

    kind: str
    name: str
    genotype: str | None = None
    num_classes: int | None = None
    input_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BlockSwapError(f"unknown model kind {self.kind!r}; valid kinds: {choices(KINDS)}")
        if self.kind == "torchvision":
            key = self.name.strip().lower()
            if key not in TEACHERS:
                raise BlockSwapError(f"unknown torchvision model {self.name!r}; valid: {choices(TEACHERS)}")
            default_size = 224
        else:
            spec = network_spec(self.name)  # raises on a bad name
            key, default_size = spec.name, spec.input_size
            if self.genotype is not None:
                from .genotype import load_genotype

                object.__setattr__(self, "genotype", load_genotype(self.genotype, key).text)
        object.__setattr__(self, "name", key)
        if self.input_size is None:
            object.__setattr__(self, "input_size", default_size)
        elif not (isinstance(self.input_size, int) and self.input_size >= 8):
            raise BlockSwapError(f"input size must be an integer >= 8 pixels, got {self.input_size!r}")

    @property
    def text(self) -> str:
        return f"torchvision:{self.name}" if self.kind == "torchvision" else self.name

    def build(self) -> nn.Module:
        """A freshly initialised network (global RNG: call under a seed, see `init_model`)."""
        if self.kind == "torchvision":
            return build_teacher(self.name, None, self.num_classes or 1000)
        return build_model(self.name, self.genotype, self.num_classes)

    def cost(self) -> dict[str, int]:
        """Parameters and MACs per image: analytic for BlockSwap nets, counted for torchvision."""
        if self.kind == "blockswap":
            c = cost(self.name, self.genotype, self.input_size, self.num_classes)
            return {"params": c.params, "macs": c.macs}
        from torch.utils.flop_counter import FlopCounterMode

        net = self.build().eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.zeros(1, 3, self.input_size, self.input_size))
        # One multiply-accumulate is two FLOPs in torch's counter.
        return {"params": sum(p.numel() for p in net.parameters()), "macs": counter.get_total_flops() // 2}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_model(text: str, genotype: str | None = None, num_classes: int | None = None,
                input_size: int | None = None) -> ModelDesc:
    """'wrn-40-2' / 'resnet34' (BlockSwap networks) or 'torchvision:resnet34'."""
    kind, sep, name = str(text).strip().partition(":")
    if sep and kind.lower() == "torchvision":
        if genotype is not None:
            raise BlockSwapError("a torchvision model has fixed blocks; a genotype needs a BlockSwap "
                                 "network (wrn-D-k, resnet18, resnet34)")
        return ModelDesc("torchvision", name, None, num_classes, input_size)
    if sep:
        raise BlockSwapError(f"unknown model {text!r}; write a network name (wrn-40-2, resnet34) or "
                             f"torchvision:NAME with NAME one of {choices(TEACHERS)}")
    return ModelDesc("blockswap", text, genotype, num_classes, input_size)


def init_model(desc: ModelDesc, seed: int) -> nn.Module:
    """Build `desc` with its random initialisation drawn from `seed`, global RNG left untouched."""
    with torch_seed(seed):
        return desc.build()


RECORD_FORMAT = "blockswap.run"  # record.json of a finished run (read by report.load_records)
CHECKPOINT_FORMAT = "blockswap.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a BlockSwap checkpoint (a file, or a run folder holding ``checkpoint.pt``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise BlockSwapError(f"checkpoint {str(path)!r} does not exist; expected a file written by "
                             f"'blockswap train' (or its run folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        first = (str(exc).splitlines() or [""])[0][:120]
        raise BlockSwapError(f"cannot read checkpoint {str(path)!r}: expected a torch file written by "
                             f"'blockswap train' ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BlockSwapError(f"{str(path)!r} is not a BlockSwap checkpoint (no \"format\": "
                             f"\"{CHECKPOINT_FORMAT}\"); for torchvision weights use torchvision:NAME "
                             "with a weights file")
    if state.get("version") != CHECKPOINT_VERSION:
        raise BlockSwapError(f"{str(path)!r}: checkpoint version {state.get('version')!r} is not "
                             f"supported; this BlockSwap reads version {CHECKPOINT_VERSION}")
    return state


def load_model(source: str | Path, weights: str | Path | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, ModelDesc]:
    """A trained network in eval mode and its description, from a checkpoint or torchvision.

    `source`: a checkpoint file or run folder written by `train`, or ``torchvision:NAME``
    (resnet18/resnet34) with ImageNet weights from the local file `weights` (never downloaded).
    """
    text = str(source)
    if text.lower().startswith("torchvision:"):
        desc = ModelDesc("torchvision", text.partition(":")[2], None, 1000, 224)
        if weights is None:
            raise BlockSwapError(f"{text} needs its ImageNet weights file (e.g. resnet34-b627a593.pth "
                                 "from torchvision); nothing is downloaded")
        net = build_teacher(desc.name, weights, 1000)
    else:
        if weights is not None:
            raise BlockSwapError("a weights file goes with torchvision:NAME; a BlockSwap checkpoint "
                                 "already holds its weights")
        state = load_checkpoint(text, "cpu")
        try:
            desc = ModelDesc(**state["model"])
            net = desc.build()
            net.load_state_dict(state["state_dict"])
        except (KeyError, TypeError, RuntimeError) as exc:
            raise BlockSwapError(f"checkpoint {text!r} does not hold a network it can rebuild: "
                                 f"{str(exc).splitlines()[0]}") from None
    return net.to(device).eval(), desc


# --------------------------------------------------------------------------------------------
# Data parallel
# --------------------------------------------------------------------------------------------


@dataclass
class Distributed:
    """Where this process sits in a data-parallel job (world_size 1: a plain run)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    owned: bool = False  # we created the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            torch.distributed.all_reduce(t)
        return t

    def close(self) -> None:
        if self.owned:
            torch.distributed.destroy_process_group()


def setup_distributed(device: str | torch.device | None = None) -> Distributed:
    """Join the process group torchrun describes (WORLD_SIZE > 1) or an initialised one.

    Backend: NCCL for GPUs, gloo on CPU. Each process uses ``cuda:LOCAL_RANK`` when GPUs exist.
    """
    import torch.distributed as td

    owned = False
    if td.is_available() and td.is_initialized():
        rank, world = td.get_rank(), td.get_world_size()
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        use_gpu = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
        td.init_process_group("nccl" if use_gpu else "gloo")
        rank, world, owned = td.get_rank(), td.get_world_size(), True
    else:
        rank, world = 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return Distributed(dev, rank, world, owned)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, split, *, batch_size: int = 500, dist: Distributed | None = None,
             amp_dtype: torch.dtype | None = None,
             memory_format: torch.memory_format = torch.preserve_format) -> dict[str, float]:
    """Top-1 / top-5 error (percent) and mean cross-entropy of `model` on every image of `split`.

    Under data parallelism each rank scores its shard and the counts are summed.
    """
    dist = dist or Distributed(torch.device("cpu"))
    model.eval()
    dev = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, top-1 hits, top-5 hits, images
    for x, y in split.batches(batch_size, rank=dist.rank, world_size=dist.world_size):
        with _autocast(dev, amp_dtype):
            logits = model(x.contiguous(memory_format=memory_format))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == y[:, None]
        sums += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                             hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                             torch.tensor(float(y.shape[0]), dtype=torch.float64, device=dev)])
    loss, top1, top5, n = dist.all_sum(sums).tolist()
    if n == 0:
        raise BlockSwapError("the evaluation split is empty")
    return {"loss": loss / n, "top1_error": 100 * (1 - top1 / n), "top5_error": 100 * (1 - top5 / n),
            "images": int(n)}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not cfg.amp or device.type != "cuda":
        return None  # CPU autocast (bf16) is slower than float32 on most CPUs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------


@dataclass
class _Teacher:
    net: nn.Module
    desc: ModelDesc
    source: str
    weights: str | None


def train_model(config: TrainConfig | str, data: str | DataSpec, out: str | Path,
                model: ModelDesc | str, *, teacher: str | Path | None = None,
                teacher_weights: str | Path | None = None, role: str | None = None,
                resume: bool = False, device: str | torch.device | None = None,
                progress: bool = True,
                on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `model` on `data`, writing checkpoints, metrics and a record to `out`.

    `teacher` (a checkpoint or ``torchvision:NAME`` with `teacher_weights`) turns on attention
    transfer (weight ``config.beta``) and, if ``config.kd_weight > 0``, Hinton KD; the teacher
    is frozen, in eval mode, under ``no_grad``. `resume` continues from ``out/checkpoint.pt``
    (without it an existing checkpoint is an error). `on_epoch_end(metrics)` is called after
    each epoch's checkpoint is written. Returns the run record (also ``out/record.json``).
    """
    cfg = recipe(config) if isinstance(config, str) else config
    dist = setup_distributed(device)
    try:
        return _train(cfg, parse_data(data), Path(out), model, teacher, teacher_weights,
                      role or ("student" if teacher is not None else "teacher"), resume, dist,
                      progress, on_epoch_end)
    finally:
        dist.close()


def _train(cfg, data, out, model, teacher, teacher_weights, role, resume, dist, progress, on_epoch_end):
    dev = dist.device
    amp_dtype = _amp_dtype(cfg, dev)
    mf = torch.channels_last if cfg.channels_last and dev.type == "cuda" else torch.preserve_format
    desc = parse_model(model) if isinstance(model, str) else model
    train_split = load_split(data, "train", desc.input_size, dev, cfg.workers)
    val_split = load_split(data, "val", desc.input_size, dev, cfg.workers)
    desc = _fit_classes(desc, train_split.num_classes, "model", data)
    seeds = run_seeds(cfg.seed)

    t = None
    if teacher is not None:
        net_t, desc_t = load_model(teacher, teacher_weights, dev)
        _fit_classes(desc_t, train_split.num_classes, f"teacher {str(teacher)!r}", data)
        t = _Teacher(net_t.to(memory_format=mf).requires_grad_(False), desc_t, str(teacher),
                     None if teacher_weights is None else str(teacher_weights))

    net = init_model(desc, seeds["init"]).to(dev, memory_format=mf)
    if t is not None:
        _check_attention_points(net, t.net, desc.input_size, dev)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    # Stepped once per epoch, as the authors' code: cosine to exactly 0 at the last epoch's end.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, eta_min=0.0) \
        if cfg.schedule == "cosine" else \
        torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_epochs, cfg.step_gamma)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    generator = torch.Generator().manual_seed(seeds["data"])  # data order + augmentation, on CPU

    identity = {"role": role, "model": desc.to_dict(), "data": str(data), "config": asdict(cfg),
                "teacher": None if t is None else {"source": t.source, "weights": t.weights,
                                                   "model": t.desc.to_dict()}}
    ckpt_path, history, start = out / CHECKPOINT_NAME, [], 0
    if ckpt_path.exists():
        if not resume:
            raise BlockSwapError(f"{str(ckpt_path)!r} exists: add --resume to continue that run, "
                                 "or choose another --out")
        state = load_checkpoint(ckpt_path, dev)
        _check_same_run(state, identity, ckpt_path)
        net.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        generator.set_state(state["rng"]["data"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())  # unused by the loop; restored for exactness
        if dev.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), dev)
        history, start = list(state["history"]), int(state["epoch"])
        if dist.is_main and progress:
            print(f"resuming {str(ckpt_path)!r} after epoch {start}/{cfg.epochs}", file=sys.stderr)
    elif resume and dist.is_main and progress:
        print(f"no checkpoint in {str(out)!r} yet: starting the run", file=sys.stderr)
    if dist.is_main:
        _write_metrics(out, history)  # drops lines of an epoch whose checkpoint never landed

    train_net = nn.parallel.DistributedDataParallel(net) if dist.world_size > 1 else net
    for epoch in range(start, cfg.epochs):
        lr = optimizer.param_groups[0]["lr"]
        tick = time.perf_counter()
        stats = _train_epoch(train_net, t, train_split, optimizer, scaler, cfg, generator, dist,
                             amp_dtype, mf, progress and dist.is_main, f"epoch {epoch + 1}/{cfg.epochs}")
        scheduler.step()
        val = evaluate(net, val_split, batch_size=cfg.eval_batch_size, dist=dist,
                       amp_dtype=amp_dtype, memory_format=mf)
        row = {"epoch": epoch + 1, "lr": lr, **stats, "val_loss": val["loss"],
               "val_top1_error": val["top1_error"], "val_top5_error": val["top5_error"],
               "seconds": time.perf_counter() - tick}
        history.append(row)
        if dist.is_main:
            rng = {"data": generator.get_state(), "torch": torch.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}
            atomic_torch_save(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **identity,
                "epoch": epoch + 1, "history": history, "state_dict": net.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng, "seeds": {"run": cfg.seed, **seeds},
                "versions": {k: str(v) for k, v in versions().items()}})  # plain str: weights_only load
            _write_metrics(out, history)
            if progress:
                print(_summary(row), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(row)

    record = _record(identity, desc, cfg, seeds, history, dist, amp_dtype)
    if dist.is_main:
        atomic_write_json(out / "record.json", record)
    return record


def _train_epoch(model, teacher, split, optimizer, scaler, cfg, generator, dist, amp_dtype, mf,
                 show, label) -> dict[str, float]:
    model.train()
    dev = dist.device
    distil = teacher is not None
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, AT loss, top-1 hits, images
    steps = math.ceil(len(split) / cfg.batch_size)
    bar = _progress_bar(steps, label) if show else None
    tick = time.perf_counter()
    for step, (x, y) in enumerate(split.batches(
            cfg.batch_size, shuffle=True, augment=cfg.augmentation or False, generator=generator,
            rank=dist.rank, world_size=dist.world_size, pad_last=dist.world_size > 1)):
        x = x.contiguous(memory_format=mf)
        with _autocast(dev, amp_dtype):
            logits, points = model(x, return_attention=True)
            if distil:
                with torch.no_grad():
                    t_logits, t_points = teacher.net(x, return_attention=True)
            if distil and cfg.kd_weight > 0:
                loss = kd_loss(logits, t_logits, y, cfg.kd_temperature, cfg.kd_weight)
            else:
                loss = F.cross_entropy(logits, y)
            at = at_loss(points, t_points, cfg.beta) if distil and cfg.beta > 0 else loss.new_zeros(())
            loss = loss + at
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = y.shape[0]
        sums += torch.stack([loss.detach().double() * n, at.detach().double() * n,
                             (logits.detach().argmax(1) == y).sum().double(),
                             torch.tensor(float(n), dtype=torch.float64, device=dev)])
        if bar is not None:
            bar.update(1)
            if step % 10 == 0 or step == steps - 1:  # .item() syncs a GPU: not every step
                seen = sums[3].item()
                bar.set_postfix(loss=f"{sums[0].item() / seen:.3f}",
                                acc=f"{100 * sums[2].item() / seen:.1f}%",
                                img_s=f"{seen * dist.world_size / (time.perf_counter() - tick):.0f}")
    if bar is not None:
        bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - tick
    loss, at, hits, n = dist.all_sum(sums).tolist()
    stats = {"train_loss": loss / n, "train_top1_error": 100 * (1 - hits / n)}
    if distil:
        stats["train_at_loss"] = at / n
    stats.update(train_images=int(n), train_seconds=seconds, train_img_per_s=n / seconds)
    return stats


def _progress_bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="step", leave=False, dynamic_ncols=True, file=sys.stderr)


def _summary(row: dict[str, Any]) -> str:
    at = f" at {row['train_at_loss']:.4f}" if "train_at_loss" in row else ""
    return (f"epoch {row['epoch']}: lr {row['lr']:.4g}  train loss {row['train_loss']:.4f}{at} "
            f"err {row['train_top1_error']:.2f}%  val loss {row['val_loss']:.4f} "
            f"top-1 err {row['val_top1_error']:.2f}% top-5 err {row['val_top5_error']:.2f}%  "
            f"{row['train_img_per_s']:.0f} img/s")


def _fit_classes(desc: ModelDesc, data_classes: int, what: str, data: DataSpec) -> ModelDesc:
    if desc.num_classes is None:
        return replace(desc, num_classes=data_classes)
    if desc.num_classes != data_classes:
        raise BlockSwapError(f"{what} has {desc.num_classes} classes but {data} has {data_classes}; "
                             "teacher, student and data must agree")
    return desc


def _check_attention_points(student: nn.Module, teacher: nn.Module, input_size: int,
                            device: torch.device) -> None:
    """Fail before training if the attention maps of student and teacher cannot be paired."""
    x = torch.zeros(2, 3, input_size, input_size, device=device)
    was_training = student.training
    student.eval()
    with torch.no_grad():
        _, s_points = student(x, return_attention=True)
        _, t_points = teacher(x, return_attention=True)
        at_loss(s_points, t_points, 1.0)  # raises BlockSwapError on a mismatch
    student.train(was_training)


def _check_same_run(state: dict[str, Any], identity: dict[str, Any], path: Path) -> None:
    """A resumed run must be the run that was interrupted, or its numbers mean nothing."""
    for key in ("role", "model", "data", "teacher"):
        if state.get(key) != identity[key]:
            raise BlockSwapError(f"cannot resume {str(path)!r}: it was a run with {key} "
                                 f"{_brief(state.get(key))}, not {_brief(identity[key])}")
    old = state.get("config", {})
    changed = [name for name, value in identity["config"].items()
               if name not in RUNTIME_FIELDS and old.get(name) != value]
    if changed:
        was = ", ".join(f"{name}={old.get(name)!r}" for name in changed)
        now = ", ".join(f"{name}={identity['config'][name]!r}" for name in changed)
        raise BlockSwapError(f"cannot resume {str(path)!r}: it was started with {was}, now {now}; "
                             "use the same settings")


def _brief(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else repr(value)


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl: one line per finished epoch (rewritten whole, atomically: small)."""
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))


def _record(identity, desc, cfg, seeds, history, dist, amp_dtype) -> dict[str, Any]:
    last = history[-1] if history else {}
    images = sum(r["train_images"] for r in history)
    seconds = sum(r["train_seconds"] for r in history)
    return {
        "format": RECORD_FORMAT, "version": 1, **identity, "genotype": desc.genotype,
        **desc.cost(),
        "top1_error": last.get("val_top1_error"), "top5_error": last.get("val_top5_error"),
        "val_loss": last.get("val_loss"), "epochs_done": len(history),
        "train_img_per_s": images / seconds if seconds else None,
        "seeds": {"run": cfg.seed, **seeds}, "world_size": dist.world_size,
        "device": str(dist.device), "mixed_precision": None if amp_dtype is None else str(amp_dtype),
        "versions": versions(), "history": history,
    }
