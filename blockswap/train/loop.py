"""The one training loop, for every task: epochs of steps over a `TrainState`.

A task (``classification``: `train.classify`; ``detection``: `train.detector`, registered in
`TRAIN_TASKS` when imported) supplies what differs: its `TrainState` (model, optimizer, rate
rule, identity), the batches of an epoch, ``step(batch) -> {"loss": total, ...}`` (per-batch
means; the loop back-propagates ``loss``), an evaluation of the validation split, the epoch
line and the run record. The loop does the rest, the same way for both:

* resume: ``out/checkpoint.pt`` is loaded and checked to be the same run (`state.check_same_run`);
* every epoch: steps, a divergence check (every 20 steps and at the last, all ranks together),
  the scheduler's step, evaluation, then ``checkpoint.pt`` and ``metrics.jsonl`` written
  atomically by rank 0 (``train_<name>`` columns: the means of the step's entries over the
  epoch's examples; ``val_<name>``: the evaluation's);
* at the end ``record.json``.

Data parallel: under ``torchrun`` the task's forward module is wrapped in DDP
(`state.wrap_ddp`); only rank 0 writes files or prints.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..files import atomic_write_json
from ..outdir import claim_folder
from ..progress import progress
from ..registry import Registry
from .checkpoint import CHECKPOINT_NAME
from .distributed import Distributed, setup_distributed
from .state import check_finite, remove_stale_temps, terminate_as_exit

# Task name -> the class of its per-task pieces, called as ``make(config, data, dist, **options)``.
# Names as the search side's tasks (`blockswap.tasks`).
TRAIN_TASKS: Registry[Any] = Registry("task")

CHECK_EVERY = 20  # steps between divergence checks: each syncs a GPU (and, under DDP, all ranks)


def fit(task: str, config: Any, data: Any, out: "str | Path", *, resume: bool = False, overwrite: bool = False,
        device: "str | torch.device | None" = None, progress: bool = True,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None, **options: Any) -> dict[str, Any]:
    """Train the task named `task` on `data` into the run folder `out`; returns the run record.

    `resume` continues from ``out/checkpoint.pt`` (a folder holding results of a run is refused
    without it, or `overwrite`, which deletes them first; the folder is locked while the run
    writes). `on_epoch_end(row)` is called after each epoch's checkpoint is written.
    """
    make = TRAIN_TASKS[task]
    dist = setup_distributed(device)
    try:
        with claim_folder(out, make.folder, resume=resume, overwrite=overwrite, enabled=dist.is_main) as out, \
                terminate_as_exit():
            if dist.is_main:
                remove_stale_temps(out, make.folder)  # of a writer killed mid-checkpoint
            return run(make(config, data, dist, **options), out, dist, resume=resume,
                       show=progress and dist.is_main, on_epoch_end=on_epoch_end)
    finally:
        dist.close()


def run(task: Any, out: Path, dist: Distributed, *, resume: bool, show: bool,
        on_epoch_end: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    state = task.state
    ckpt = out / CHECKPOINT_NAME
    if ckpt.exists():  # claim_folder has refused it unless resume
        state.load(ckpt, dist.device, writer=task.writer, hint=task.hint)
        task.resumed()
        if show:
            print(f"resuming {str(ckpt)!r} after epoch {state.epoch}/{task.epochs}", file=sys.stderr)
    elif resume and show:
        print(f"no checkpoint in {str(out)!r} yet: starting the run", file=sys.stderr)
    if dist.is_main and state.history:
        state.write_metrics(out)  # drops lines of an epoch whose checkpoint never landed

    for epoch in range(state.epoch, task.epochs):
        tick = time.perf_counter()
        train = _train_epoch(task, epoch, dist, show, out)
        if state.scheduler is not None:
            state.scheduler.step()  # once per epoch (the authors' cosine / step schedules)
        task.before_evaluation()
        val = task.evaluate()
        if "loss" in val:
            check_finite({"validation loss": val["loss"]}, epoch + 1, None, train["lr"], out)
        row = {"epoch": epoch + 1, **train, **{f"val_{k}": v for k, v in val.items()},
               "seconds": time.perf_counter() - tick}
        state.history.append(row)
        state.epoch = epoch + 1
        if dist.is_main:
            state.save(ckpt)
            state.write_metrics(out)
            if show:
                print(task.summary(row), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(row)

    record = task.record()
    if dist.is_main:
        atomic_write_json(out / "record.json", record)
    return record


def _train_epoch(task: Any, epoch: int, dist: Distributed, show: bool, out: Path) -> dict[str, Any]:
    """One pass over the training data: the row's ``lr`` and ``train_*`` entries."""
    state = task.state
    task.train()
    dev = dist.device
    sums: dict[str, torch.Tensor] = {}  # per-batch means times examples, float64, on the device
    seen = torch.zeros((), dtype=torch.float64, device=dev)
    steps = task.steps_per_epoch
    bar = progress(steps, f"epoch {epoch + 1}/{task.epochs}", "step", enabled=show, leave=False)
    tick = time.perf_counter()
    batches: Iterable = task.batches(epoch)
    for step, batch in enumerate(batches):
        state.set_lr(epoch, step)
        losses = task.step(batch)
        loss = losses["loss"]
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            loss.backward()
            state.optimizer.step()
        task.after_step()
        n = task.batch_len(batch)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.detach().double() * n
        seen += n
        # The postfix goes with the step's own update (refresh=False: no extra, unthrottled
        # redraw); every step on the CPU, every 10th on a GPU, where .item() waits for it.
        if show and (dev.type == "cpu" or step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{(sums['loss'] / seen).item():.3f}",
                            img_s=f"{seen.item() * dist.world_size / (time.perf_counter() - tick):.3g}",
                            refresh=False)
        bar.update(1)
        # A diverged loss stops the run before its checkpoint; decided by all processes
        # together, so that no data-parallel rank waits for another forever.
        if step % CHECK_EVERY == 0 or step == steps - 1:
            total = dist.all_sum(sums["loss"].clone())
            check_finite({"train loss": float(total)}, epoch + 1, step + 1,
                         state.optimizer.param_groups[0]["lr"], out)
    bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - tick
    names = list(sums)
    *totals, n = dist.all_sum(torch.stack([*(sums[k] for k in names), seen])).tolist()
    row: dict[str, Any] = {"lr": state.optimizer.param_groups[0]["lr"]}  # the last step's
    row.update({f"train_{k}": v / n for k, v in zip(names, totals)})
    row.update(train_images=int(n), train_seconds=seconds, train_img_per_s=n / seconds)
    return row
