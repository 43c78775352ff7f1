"""Classification training: teachers with cross-entropy, students with attention transfer.

A teacher trains with cross-entropy; a student adds attention transfer from a frozen teacher
(paper Sec. 3.2; `distill.at_loss`) and optionally Hinton KD. Everything a run needs is a
`TrainConfig` (a recipe preset plus overrides), a dataset, a `ModelDesc` and an output folder,
which receives after every epoch (`loop.run`)

* ``checkpoint.pt``: model, optimizer, scheduler, grad scaler, epoch, RNG states, history,
  written atomically, so ``resume=True`` continues exactly where an interrupted run stopped
  (on CPU the resumed run's metrics equal an uninterrupted run's bit for bit);
* ``metrics.jsonl``: one JSON object per finished epoch;

and at the end ``record.json`` (config, genotype, params, MACs, top-1/top-5 error, seeds,
versions). Randomness flows from ``config.seed`` alone: one derived seed initialises the model,
one `torch.Generator` orders the data and draws every augmentation.

Data parallel: started under ``torchrun --nproc_per_node=N`` the model is wrapped in DDP;
``batch_size`` stays the global minibatch and each process takes its slice.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.load import load_split
from ..data.spec import DataSpec, parse_data
from ..errors import BlockSwapError
from ..files import versions
from ..seeding import derive_seed
from .checkpoint import CHECKPOINT, RUN_RECORD, TRAIN_FOLDER, load_model
from .config import RESUME_RUNTIME_FIELDS, TrainConfig, recipe, run_seeds
from .distill import at_loss, kd_loss
from .distributed import Distributed
from .evaluate import amp_dtype, autocast, evaluate, legacy_precision, precision_name
from .loop import TRAIN_TASKS, fit
from .models import ModelDesc, _module_teacher, init_model, module_fingerprint, parse_model
from .prune import Masks, apply_masks, l1_masks, nonzero_params, snip_masks, sparse_macs
from .state import TrainState, wrap_ddp


def train_model(config: TrainConfig | str, data: "str | DataSpec | Any", out: str | Path,
                model: ModelDesc | str, *, teacher: "str | Path | nn.Module | None" = None,
                teacher_weights: str | Path | None = None, teacher_nodes: Sequence[str] | None = None,
                role: str | None = None, resume: bool = False, overwrite: bool = False,
                device: str | torch.device | None = None, progress: bool = True,
                on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `model` on `data`, writing checkpoints, metrics and a record to `out`.

    `teacher` turns on attention transfer (weight ``config.beta``) and, if ``config.kd_weight >
    0``, Hinton KD: a checkpoint, ``torchvision:NAME`` with `teacher_weights`, or any
    `nn.Module` whose attention points are the `torchvision.models.feature_extraction` node
    names `teacher_nodes` (default: the stages ``layer1``.. of a torchvision ResNet). The
    teacher is frozen, in eval mode, under ``no_grad``. `resume`, `overwrite`, `on_epoch_end`:
    `loop.fit`. Returns the run record (also ``out/record.json``). A run whose loss stops being
    finite raises `BlockSwapError`; its last good checkpoint stays.
    """
    if isinstance(config, str):
        cfg = recipe(config)
    elif isinstance(config, TrainConfig):
        cfg = config
    else:
        raise BlockSwapError(f"train_model: config must be a TrainConfig (bs.recipe('digits', epochs=5)) or a "
                             f"recipe name, got {type(config).__name__} {config!r}"[:300])
    if not isinstance(model, (ModelDesc, str)):
        raise BlockSwapError(f"train_model: model must be a ModelDesc, a network name such as 'wrn-16-2' or "
                             f"'torchvision:resnet18', got {type(model).__name__} {model!r}"[:300])
    if not isinstance(out, (str, os.PathLike)):
        raise BlockSwapError(f"train_model: out must be a folder path, got {type(out).__name__} {out!r}"[:300])
    if teacher_nodes is not None and not isinstance(teacher, nn.Module):
        raise BlockSwapError("teacher_nodes name the attention points of a teacher given as an nn.Module; "
                             "a checkpoint or torchvision teacher has its own")
    return fit("classification", cfg, data, out, resume=resume, overwrite=overwrite, device=device,
               progress=progress, on_epoch_end=on_epoch_end, model=model, teacher=teacher,
               teacher_weights=teacher_weights, teacher_nodes=teacher_nodes,
               role=role or ("student" if teacher is not None else "teacher"))


class _Intermediates(nn.Module):
    """``forward`` = the wrapped network's ``forward_intermediates``: the module DDP wraps, so
    that the logits and the attention points come from one forward that DDP sees."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net.forward_intermediates(x)


@dataclass
class _Teacher:
    net: nn.Module
    identity: dict[str, Any]  # what the checkpoint and the record say about it


@TRAIN_TASKS.register("classification")
class Classification:
    """Per-task pieces of a classifier's run (`loop.run` calls them)."""

    folder = TRAIN_FOLDER
    writer, hint = "blockswap train", "; for torchvision weights use torchvision:NAME with a weights file"

    def __init__(self, cfg: TrainConfig, data: Any, dist: Distributed, *, model, teacher, teacher_weights,
                 teacher_nodes, role: str):
        data = parse_data(data)
        self.cfg, self.data, self.dist = cfg, data, dist
        dev = self.dev = dist.device
        self.amp_dtype = amp_dtype(cfg.amp, dev)
        self.mf = mf = torch.channels_last if cfg.channels_last and dev.type == "cuda" else torch.preserve_format
        desc = parse_model(model) if isinstance(model, str) else model
        self.train_split = load_split(data, "train", desc.input_size, dev, cfg.workers)
        if cfg.train_images:
            if not hasattr(self.train_split, "subset"):
                raise BlockSwapError(f"train_images: {data} is streamed from disk; a subset of in-memory data only")
            self.train_split = self.train_split.subset(cfg.train_images)
        self.val_split = load_split(data, "val", desc.input_size, dev, cfg.workers)
        classes = self.train_split.num_classes
        self.desc = desc = _fit_classes(desc, classes, "model", data)
        self.seeds = run_seeds(cfg.seed)
        self.teacher = None if teacher is None else \
            _load_teacher(teacher, teacher_weights, teacher_nodes, classes, data, dev, mf)

        self.train_split.check_batch_size(cfg.batch_size, f"training split of {data}")  # as the search does
        self.net = net = init_model(desc, self.seeds["init"]).to(dev, memory_format=mf)
        masks = _prepare_pruning(net, desc, self.train_split, cfg.batch_size, cfg.seed, dev) if desc.prune else {}
        if self.teacher is not None:
            _check_attention_points(net, self.teacher.net, desc.input_size, classes, dev)
        optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        # Stepped once per epoch, as the authors' code: cosine to exactly 0 at the last epoch's end.
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, eta_min=0.0) \
            if cfg.schedule == "cosine" else \
            torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_epochs, cfg.step_gamma)
        identity = {"role": role, "model": desc.to_dict(), "data": str(data), "config": asdict(cfg),
                    "teacher": None if self.teacher is None else self.teacher.identity,
                    "precision": precision_name(self.amp_dtype)}
        self.state = TrainState(
            net, optimizer, identity, CHECKPOINT, RESUME_RUNTIME_FIELDS, scheduler=scheduler,
            legacy=lambda old: {"precision": legacy_precision(old.get("config", {}).get("amp", True), dev)},
            hints={"precision": lambda was: f"resume it with amp={was != 'float32'} (--no-amp / --amp)"},
            scaler=torch.amp.GradScaler(dev.type, enabled=self.amp_dtype == torch.float16),
            generator=torch.Generator().manual_seed(self.seeds["data"]),  # data order + augmentation, on CPU
            extra={"seeds": {"run": cfg.seed, **self.seeds}, **({"masks": masks} if masks else {})})
        # DDP must wrap the module whose forward runs, so wrap the intermediates view of the net.
        self.train_net = wrap_ddp(_Intermediates(net), dist.world_size)
        self.epochs = cfg.epochs
        self.steps_per_epoch = math.ceil(len(self.train_split) / cfg.batch_size)

    @property
    def masks(self) -> Masks:
        return self.state.extra.get("masks", {})

    def resumed(self) -> None:
        if self.masks:  # as pruned, not recomputed
            self.state.extra["masks"] = {k: v.to(self.dev) for k, v in self.masks.items()}

    def train(self) -> None:
        self.train_net.train()

    def batches(self, epoch: int):
        return self.train_split.batches(
            self.cfg.batch_size, shuffle=True, augment=self.cfg.augmentation or False,
            generator=self.state.generator, rank=self.dist.rank, world_size=self.dist.world_size,
            pad_last=self.dist.world_size > 1)

    @staticmethod
    def batch_len(batch) -> int:
        return int(batch[1].shape[0])

    def step(self, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        x = x.contiguous(memory_format=self.mf)
        cfg, t = self.cfg, self.teacher
        with autocast(self.dev, self.amp_dtype):
            logits, points = self.train_net(x)
            if t is not None:
                with torch.no_grad():
                    t_logits, t_points = t.net.forward_intermediates(x)
        logits = logits.float()  # losses in float32 under mixed precision (no-op otherwise)
        if t is not None and cfg.kd_weight > 0:
            loss = kd_loss(logits, t_logits.float(), y, cfg.kd_temperature, cfg.kd_weight)
        else:
            loss = F.cross_entropy(logits, y)
        out = {"loss": loss, "top1_error": 100 * (logits.detach().argmax(1) != y).double().mean()}
        if t is not None:  # attention maps and the loss in float32 (`distill.attention_map`)
            at = at_loss(list(points.values()), list(t_points.values()), cfg.beta) if cfg.beta > 0 \
                else loss.new_zeros((), dtype=torch.float32)
            out["loss"] = loss + at
            out["at_loss"] = at
        return out

    def after_step(self) -> None:
        if self.masks:
            apply_masks(self.net, self.masks)  # pruned students: pruned weights back to exactly zero

    def before_evaluation(self) -> None:
        pass  # BN statistics: DDP broadcasts rank 0's buffers at every forward

    def evaluate(self) -> dict[str, float]:
        # In float32 whatever the training precision: the errors a run records are the ones
        # `blockswap evaluate` gives its checkpoint (bf16 logits flip near-tied predictions).
        val = evaluate(self.net, self.val_split, batch_size=self.cfg.eval_batch_size, dist=self.dist,
                       memory_format=self.mf)
        return {k: val[k] for k in ("loss", "top1_error", "top5_error")}

    @staticmethod
    def summary(row: dict[str, Any]) -> str:
        # "AT loss": the attention-transfer term of a student's loss (paper Sec. 3.2), included in "train loss".
        at = f" (AT loss {row['train_at_loss']:.4f})" if "train_at_loss" in row else ""
        return (f"epoch {row['epoch']}: lr {row['lr']:.4g}  train loss {row['train_loss']:.4f}{at} "
                f"err {row['train_top1_error']:.2f}%  val loss {row['val_loss']:.4f} "
                f"top-1 err {row['val_top1_error']:.2f}% top-5 err {row['val_top5_error']:.2f}%  "
                f"{row['train_img_per_s']:.0f} img/s")

    def record(self) -> dict[str, Any]:
        history, desc = self.state.history, self.desc
        last = history[-1] if history else {}
        images = sum(r["train_images"] for r in history)
        seconds = sum(r["train_seconds"] for r in history)
        record = {
            **RUN_RECORD.stamp(), **self.state.identity, "genotype": desc.genotype,
            **desc.cost(),
            "top1_error": last.get("val_top1_error"), "top5_error": last.get("val_top5_error"),
            "val_loss": last.get("val_loss"), "epochs_done": len(history),
            "train_img_per_s": images / seconds if seconds else None,
            "seeds": {"run": self.cfg.seed, **self.seeds}, "world_size": self.dist.world_size,
            "device": str(self.dev),
            "mixed_precision": None if self.amp_dtype is None else str(self.amp_dtype),
            "versions": versions(), "history": history,
        }
        if self.masks:  # measured on the trained network: non-zero parameters and the MACs they do
            record.update(nonzero_params=nonzero_params(self.net),
                          nonzero_macs=sparse_macs(self.net, desc.input_size))
        return record


def _load_teacher(teacher, weights, nodes, classes: int, data, dev, mf) -> _Teacher:
    if isinstance(teacher, nn.Module):
        if weights is not None:
            raise BlockSwapError("teacher_weights go with a torchvision:NAME teacher; an nn.Module teacher "
                                 "already holds its weights")
        net = _module_teacher(teacher, nodes).to(dev).eval()
        identity = {"source": "module", "module": type(teacher).__qualname__,
                    "fingerprint": module_fingerprint(teacher), "nodes": list(getattr(net, "stage_names", ()))}
    else:
        net, desc_t = load_model(teacher, weights, dev)
        _fit_classes(desc_t, classes, f"teacher {str(teacher)!r}", data)
        identity = {"source": str(teacher), "weights": None if weights is None else str(weights),
                    "model": desc_t.to_dict()}
    return _Teacher(net.to(memory_format=mf).requires_grad_(False), identity)


def _prepare_pruning(net: nn.Module, desc, split, batch_size: int, seed: int, device: torch.device) -> Masks:
    """The masks of a pruned student (`desc.prune`), applied to `net`: for l1, `net` first takes
    the weights of the teacher `desc.prune_source` by name; for snip, the minibatch is drawn from
    the training `split` with a generator seeded from the run seed."""
    if desc.prune == "l1":
        source, source_desc = load_model(desc.prune_source, None, device)
        if (source_desc.kind, source_desc.name) != (desc.kind, desc.name) or \
                any(b != "S" for b in (source_desc.genotype or "S").split(",")):
            raise BlockSwapError(f"l1 pruning needs a teacher of {desc.name} with standard blocks; "
                                 f"{desc.prune_source!r} holds {source_desc.text} {source_desc.genotype or ''}".rstrip())
        try:
            net.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            raise BlockSwapError(f"cannot take the weights of {desc.prune_source!r}: "
                                 f"{str(exc).splitlines()[0]}") from None
        masks = l1_masks(net, desc.prune_params)
    else:
        generator = torch.Generator().manual_seed(derive_seed(seed, "train", "prune"))
        x, y = split.sample(batch_size, generator)
        masks = snip_masks(net, x.to(device), y.to(device), desc.prune_params)
    apply_masks(net, masks)
    return masks


def _fit_classes(desc: ModelDesc, data_classes: int, what: str, data) -> ModelDesc:
    if desc.num_classes is None:
        return replace(desc, num_classes=data_classes)
    if desc.num_classes != data_classes:
        raise BlockSwapError(f"{what} has {desc.num_classes} classes but {data} has {data_classes}; "
                             "teacher, student and data must agree")
    return desc


def _check_attention_points(student: nn.Module, teacher: nn.Module, input_size: int, classes: int,
                            device: torch.device) -> None:
    """Fail before training if the attention maps of student and teacher cannot be paired: by
    their `feature_info` where both describe their stages (timm-style), then on a zero input."""
    s_info, t_info = getattr(student, "feature_info", None), getattr(teacher, "feature_info", None)
    if s_info is not None and t_info is not None and len(s_info) == len(t_info):  # else: at_loss says
        s_red, t_red = [f["reduction"] for f in s_info], [f["reduction"] for f in t_info]
        if s_red != t_red:
            raise BlockSwapError(f"attention transfer pairs stage outputs of equal stride: the student's stages "
                                 f"reduce the input {s_red}, the teacher's {t_red}")
    x = torch.zeros(2, 3, input_size, input_size, device=device)
    was_training = student.training
    student.eval()
    with torch.no_grad():
        _, s_points = student.forward_intermediates(x)
        t_logits, t_points = teacher.forward_intermediates(x)
        at_loss(list(s_points.values()), list(t_points.values()), 1.0)  # raises BlockSwapError on a mismatch
    student.train(was_training)
    if t_logits.dim() != 2 or t_logits.shape[1] != classes:
        raise BlockSwapError(f"the teacher gives logits of shape {tuple(t_logits.shape[1:])} per image but the "
                             f"data has {classes} classes; teacher, student and data must agree")
