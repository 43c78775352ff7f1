"""The state of a training run, for every task: what a checkpoint holds, how a run resumes.

A `TrainState` is the model, its optimizer, the learning-rate rule (an epoch-stepped scheduler
or a function of (epoch, step)), the grad scaler, the data generator, the history of finished
epochs, the epoch count and the run's *identity* (role, model, data, config, ...). One place
saves it (atomically, after every epoch), loads it, checks that a resumed run is the run that
was interrupted, writes ``metrics.jsonl``, stops a diverged run and wraps the model in DDP.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import BlockSwapError
from ..files import FileFormat, atomic_torch_save, atomic_write_text, dumps, stale_temp_files, versions
from ..outdir import RunFolder
from .checkpoint import CHECKPOINT_NAME, load_checkpoint


@dataclass
class TrainState:
    """Everything an epoch boundary must carry for a resumed run to equal an uninterrupted one.

    `runtime`: the config fields that may differ on resume (they change speed or memory, or,
    for a rate that is a function of the epoch, only the epochs not run yet). `extra`: task
    entries saved with the checkpoint and restored into it as they are (pruning masks, seeds).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    identity: dict[str, Any]
    kind: FileFormat
    runtime: frozenset[str] = frozenset()
    scheduler: Any = None  # stepped once per epoch (classification), or None
    lr_at: Callable[[int, int], float] | None = None  # rate of (epoch, step), both 0-based (detection)
    scaler: torch.amp.GradScaler | None = None
    generator: torch.Generator | None = None  # data order and augmentation, kept across epochs
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0  # epochs finished
    extra: dict[str, Any] = field(default_factory=dict)
    # Config fields added since older checkpoints were written, with the value those runs had.
    added: dict[str, Any] = field(default_factory=dict)
    # Identity entries older checkpoints lack, derived from what they hold (checkpoint -> entries).
    legacy: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # For an identity entry that differs on resume: (the checkpoint's value) -> what to do about it.
    hints: dict[str, Callable[[Any], str]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """The checkpoint after `epoch` epochs, written atomically (old file or new, never torn)."""
        device = next(self.model.parameters()).device
        state: dict[str, Any] = {**self.kind.stamp(), **self.identity, "epoch": self.epoch,
                                 "history": self.history, "state_dict": self.model.state_dict(),
                                 "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.generator is not None:
            state["rng"] = {"data": self.generator.get_state(), "torch": torch.get_rng_state(),
                            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        state.update(self.extra)
        state["versions"] = {k: str(v) for k, v in versions().items()}  # plain str: weights_only load
        atomic_torch_save(path, state)

    def load(self, path: Path, device: torch.device, *, writer: str, hint: str) -> dict[str, Any]:
        """Restore the checkpoint at `path` into this state (after `check_same_run`); returns it."""
        state = load_checkpoint(path, device, kind=self.kind, writer=writer, hint=hint)
        if self.legacy is not None:
            state = {**self.legacy(state), **state}
        check_same_run(state, self.identity, path, self.runtime, self.added, self.hints)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.generator is not None and "rng" in state:
            self.generator.set_state(state["rng"]["data"].cpu())
            torch.set_rng_state(state["rng"]["torch"].cpu())  # unused by the loops; restored for exactness
            if device.type == "cuda" and state["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
        for key in self.extra:
            if key in state:
                self.extra[key] = state[key]
        self.history, self.epoch = list(state["history"]), int(state["epoch"])
        return state

    def write_metrics(self, out: Path) -> None:
        """metrics.jsonl: one line per finished epoch (rewritten whole, atomically: small), so a
        line of an epoch whose checkpoint never landed is dropped on resume."""
        atomic_write_text(out / "metrics.jsonl", "".join(dumps(row) + "\n" for row in self.history))

    def set_lr(self, epoch: int, step: int) -> None:
        if self.lr_at is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(epoch, step)


def check_same_run(state: dict[str, Any], identity: dict[str, Any], path: Path,
                   runtime: frozenset[str] | set[str] | tuple[str, ...], added: dict[str, Any] | None = None,
                   hints: dict[str, Callable[[Any], str]] | None = None) -> None:
    """A resumed run must be the run that was interrupted, or its numbers mean nothing.

    Every identity entry but ``config`` must be equal (entries of a description added since the
    checkpoint was written count as None); ``config`` field by field, except `runtime` fields.
    """
    for key, now in identity.items():
        if key == "config":
            continue
        was = _with_new_fields(state.get(key), now)
        if was != now:
            hint = f"; {hints[key](was)}" if hints and key in hints else ""
            raise BlockSwapError(f"cannot resume {str(path)!r}: it was a run with {key} "
                                 f"{_brief(state.get(key))}, not {_brief(now)}{hint}")
    old, new = {**(added or {}), **state.get("config", {})}, identity.get("config", {})
    changed = [name for name, value in new.items() if name not in runtime and old.get(name) != value]
    if changed:
        was = ", ".join(f"{name}={old.get(name)!r}" for name in changed)
        now = ", ".join(f"{name}={new[name]!r}" for name in changed)
        raise BlockSwapError(f"cannot resume {str(path)!r}: it was started with {was}, now {now}; "
                             "use the same settings")


def _with_new_fields(was: Any, now: Any) -> Any:
    if isinstance(was, dict) and isinstance(now, dict):
        return {**dict.fromkeys(now), **{k: _with_new_fields(v, now.get(k)) for k, v in was.items()}}
    return was


def _brief(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict) else repr(value)


def check_finite(values: dict[str, float], epoch: int, step: int | None, lr: float, out: Path) -> None:
    """Stop a diverging run before it writes a checkpoint: its last good one stays in `out`.
    `epoch` and `step` are 1-based."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if not bad:
        return
    where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
    kept = (f"the checkpoint of epoch {epoch - 1} is kept" if epoch - 1 > 0
            else "no epoch had finished, so there is no checkpoint")
    raise BlockSwapError(f"training diverged ({where}): {', '.join(f'{k} {v}' for k, v in bad.items())}; "
                         f"{kept} in {str(out)!r}; lower the learning rate (--lr, now {lr:g})")


def wrap_ddp(module: nn.Module, world_size: int, *, find_unused_parameters: bool = False) -> nn.Module:
    """`module` in DistributedDataParallel when the run has more than one process."""
    if world_size <= 1:
        return module
    return nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused_parameters)


def remove_stale_temps(out: Path, folder: RunFolder) -> list[Path]:
    """Delete temporary files a killed writer left (``.checkpoint.pt.XXXX.tmp``,
    `files.stale_temp_files`). Called with the run folder locked, so no live writer owns one."""
    removed = []
    for name in {*folder.results, CHECKPOINT_NAME}:
        for tmp in stale_temp_files(out / name):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit while the run trains, so that a checkpoint being written
    deletes its temporary file and the folder lock is released (kill -9 allows neither: the
    next start removes the file, `remove_stale_temps`). Left alone off the main thread and
    where a handler other than the default is installed."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
