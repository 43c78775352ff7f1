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

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.spec import DataSpec, parse_data
from ..data.load import load_split
from ..errors import BlockSwapError
from ..outdir import claim_folder
from ..files import atomic_torch_save, atomic_write_json, atomic_write_text, dumps, versions
from ..progress import progress
from ..seeding import derive_seed
from .checkpoint import CHECKPOINT, CHECKPOINT_NAME, RUN_RECORD, TRAIN_FOLDER, load_checkpoint, load_model
from .config import RUNTIME_FIELDS, TrainConfig, recipe, run_seeds
from .distill import at_loss, kd_loss
from .distributed import setup_distributed
from .evaluate import autocast, evaluate
from .models import ModelDesc, init_model, parse_model
from .prune import Masks, apply_masks, l1_masks, nonzero_params, snip_masks, sparse_macs


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not cfg.amp or device.type != "cuda":
        return None  # CPU autocast (bf16) is slower than float32 on most CPUs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


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
    desc: ModelDesc
    source: str
    weights: str | None


def train_model(config: TrainConfig | str, data: str | DataSpec, out: str | Path,
                model: ModelDesc | str, *, teacher: str | Path | None = None,
                teacher_weights: str | Path | None = None, role: str | None = None,
                resume: bool = False, overwrite: bool = False, device: str | torch.device | None = None,
                progress: bool = True,
                on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `model` on `data`, writing checkpoints, metrics and a record to `out`.

    `teacher` (a checkpoint or ``torchvision:NAME`` with `teacher_weights`) turns on attention
    transfer (weight ``config.beta``) and, if ``config.kd_weight > 0``, Hinton KD; the teacher
    is frozen, in eval mode, under ``no_grad``. `resume` continues from ``out/checkpoint.pt``
    (a folder holding results of a run is refused without it, or `overwrite`, which deletes
    them first; the folder is locked while the run writes). `on_epoch_end(metrics)` is called
    after each epoch's checkpoint is written. Returns the run record (also ``out/record.json``).
    A run whose loss stops being finite raises `BlockSwapError`; its last good checkpoint stays.
    """
    cfg = recipe(config) if isinstance(config, str) else config
    dist = setup_distributed(device)
    try:
        with claim_folder(out, TRAIN_FOLDER, resume=resume, overwrite=overwrite, enabled=dist.is_main) as out:
            return _train(cfg, parse_data(data), out, model, teacher, teacher_weights,
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

    train_split.check_batch_size(cfg.batch_size, f"training split of {data}")  # as the search does
    net = init_model(desc, seeds["init"]).to(dev, memory_format=mf)
    masks = _prepare_pruning(net, desc, train_split, cfg.batch_size, cfg.seed, dev) if desc.prune else {}
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
    if ckpt_path.exists():  # claim_folder has refused it unless resume
        state = load_checkpoint(ckpt_path, dev)
        _check_same_run(state, identity, ckpt_path)
        net.load_state_dict(state["state_dict"])
        masks = {k: v.to(dev) for k, v in state.get("masks", {}).items()}  # as pruned, not recomputed
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
    if dist.is_main and history:
        _write_metrics(out, history)  # drops lines of an epoch whose checkpoint never landed

    # DDP must wrap the module whose forward runs, so wrap the intermediates view of the net.
    train_net = _Intermediates(net)
    if dist.world_size > 1:
        train_net = nn.parallel.DistributedDataParallel(train_net)
    for epoch in range(start, cfg.epochs):
        lr = optimizer.param_groups[0]["lr"]
        tick = time.perf_counter()
        stats = _train_epoch(train_net, t, train_split, optimizer, scaler, cfg, generator, dist,
                             amp_dtype, mf, progress and dist.is_main, f"epoch {epoch + 1}/{cfg.epochs}",
                             (lambda: apply_masks(net, masks)) if masks else None)
        _check_finite({"train loss": stats["train_loss"]}, epoch + 1, stats.get("diverged_step"), cfg, out)
        scheduler.step()
        val = evaluate(net, val_split, batch_size=cfg.eval_batch_size, dist=dist,
                       amp_dtype=amp_dtype, memory_format=mf)
        _check_finite({"validation loss": val["loss"]}, epoch + 1, None, cfg, out)
        row = {"epoch": epoch + 1, "lr": lr, **stats, "val_loss": val["loss"],
               "val_top1_error": val["top1_error"], "val_top5_error": val["top5_error"],
               "seconds": time.perf_counter() - tick}
        history.append(row)
        if dist.is_main:
            rng = {"data": generator.get_state(), "torch": torch.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}
            atomic_torch_save(ckpt_path, {
                **CHECKPOINT.stamp(), **identity,
                "epoch": epoch + 1, "history": history, "state_dict": net.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng, "seeds": {"run": cfg.seed, **seeds},
                **({"masks": masks} if masks else {}),
                "versions": {k: str(v) for k, v in versions().items()}})  # plain str: weights_only load
            _write_metrics(out, history)
            if progress:
                print(_summary(row), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(row)

    record = _record(identity, desc, cfg, seeds, history, dist, amp_dtype)
    if masks:  # measured on the trained network: non-zero parameters and the MACs they do
        record.update(nonzero_params=nonzero_params(net), nonzero_macs=sparse_macs(net, desc.input_size))
    if dist.is_main:
        atomic_write_json(out / "record.json", record)
    return record


def _train_epoch(model, teacher, split, optimizer, scaler, cfg, generator, dist, amp_dtype, mf,
                 show, label, after_step=None) -> dict[str, float]:
    model.train()
    dev = dist.device
    distil = teacher is not None
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, AT loss, top-1 hits, images
    steps = math.ceil(len(split) / cfg.batch_size)
    diverged = None
    bar = progress(steps, label, "step", enabled=show, leave=False)
    tick = time.perf_counter()
    for step, (x, y) in enumerate(split.batches(
            cfg.batch_size, shuffle=True, augment=cfg.augmentation or False, generator=generator,
            rank=dist.rank, world_size=dist.world_size, pad_last=dist.world_size > 1)):
        x = x.contiguous(memory_format=mf)
        with autocast(dev, amp_dtype):
            logits, points = model(x)
            if distil:
                with torch.no_grad():
                    t_logits, t_points = teacher.net.forward_intermediates(x)
            if distil and cfg.kd_weight > 0:
                loss = kd_loss(logits, t_logits, y, cfg.kd_temperature, cfg.kd_weight)
            else:
                loss = F.cross_entropy(logits, y)
            at = at_loss(list(points.values()), list(t_points.values()), cfg.beta) if distil and cfg.beta > 0 else loss.new_zeros(())
            loss = loss + at
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if after_step is not None:
            after_step()  # pruned students: pruned weights back to exactly zero
        n = y.shape[0]
        sums += torch.stack([loss.detach().double() * n, at.detach().double() * n,
                             (logits.detach().argmax(1) == y).sum().double(),
                             torch.tensor(float(n), dtype=torch.float64, device=dev)])
        bar.update(1)
        # A diverged loss stops the epoch (one device sync per 20 steps); decided by all
        # processes together, so that no data-parallel rank waits for another forever.
        if step % 20 == 0 and not torch.isfinite(dist.all_sum(sums[:1].clone())).all():
            diverged = step + 1
            break
        if show:
            if step % 10 == 0 or step == steps - 1:  # .item() syncs a GPU: not every step
                seen = sums[3].item()
                bar.set_postfix(loss=f"{sums[0].item() / seen:.3f}",
                                acc=f"{100 * sums[2].item() / seen:.1f}%",
                                img_s=f"{seen * dist.world_size / (time.perf_counter() - tick):.0f}")
    bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - tick
    loss, at, hits, n = dist.all_sum(sums).tolist()
    stats = {"train_loss": loss / n, "train_top1_error": 100 * (1 - hits / n)}
    if distil:
        stats["train_at_loss"] = at / n
    stats.update(train_images=int(n), train_seconds=seconds, train_img_per_s=n / seconds)
    if diverged is not None:
        stats["diverged_step"] = diverged
    return stats


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


def _check_finite(values: dict[str, float], epoch: int, step: int | None, cfg: TrainConfig, out: Path) -> None:
    """Stop a diverging run before it writes a checkpoint: its last good one stays in `out`."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if not bad:
        return
    where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
    kept = (f"the checkpoint of epoch {epoch - 1} is kept" if epoch - 1 > 0
            else "no epoch had finished, so there is no checkpoint")
    raise BlockSwapError(f"training diverged ({where}): {', '.join(f'{k} {v}' for k, v in bad.items())}; "
                         f"{kept} in {str(out)!r}; lower the learning rate (--lr, now {cfg.lr:g})")


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
        _, s_points = student.forward_intermediates(x)
        _, t_points = teacher.forward_intermediates(x)
        at_loss(list(s_points.values()), list(t_points.values()), 1.0)  # raises BlockSwapError on a mismatch
    student.train(was_training)


def _check_same_run(state: dict[str, Any], identity: dict[str, Any], path: Path) -> None:
    """A resumed run must be the run that was interrupted, or its numbers mean nothing."""
    for key in ("role", "model", "data", "teacher"):
        was = state.get(key)
        if key == "model" and isinstance(was, dict):
            was = {**dict.fromkeys(identity["model"]), **was}  # ModelDesc fields added since: None
        if key == "teacher" and isinstance(was, dict) and isinstance(identity[key], dict):
            was = {**was, "model": {**dict.fromkeys(identity[key]["model"]), **was.get("model", {})}}
        if was != identity[key]:
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
    atomic_write_text(out / "metrics.jsonl", "".join(dumps(row) + "\n" for row in history))


def _record(identity, desc, cfg, seeds, history, dist, amp_dtype) -> dict[str, Any]:
    last = history[-1] if history else {}
    images = sum(r["train_images"] for r in history)
    seconds = sum(r["train_seconds"] for r in history)
    return {
        **RUN_RECORD.stamp(), **identity, "genotype": desc.genotype,
        **desc.cost(),
        "top1_error": last.get("val_top1_error"), "top5_error": last.get("val_top5_error"),
        "val_loss": last.get("val_loss"), "epochs_done": len(history),
        "train_img_per_s": images / seconds if seconds else None,
        "seeds": {"run": cfg.seed, **seeds}, "world_size": dist.world_size,
        "device": str(dist.device), "mixed_precision": None if amp_dtype is None else str(amp_dtype),
        "versions": versions(), "history": history,
    }
