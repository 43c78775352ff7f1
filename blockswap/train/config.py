"""Training settings: one frozen `TrainConfig`, named recipes (paper Sec. 5 and 6), run seeds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from ..data.augment import Augment
from ..errors import BlockSwapError, choices
from ..seeding import derive_seed

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
    # Mixed precision: True on CUDA (bf16, or fp16 with loss scaling), float32 on CPU; "cpu": bf16
    # autocast on the CPU too (CPUs with AVX512-BF16 or AMX only); False: float32 everywhere.
    amp: bool | str = True
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
        if not (isinstance(self.amp, bool) or self.amp == "cpu"):
            raise BlockSwapError(f"amp must be True, False or 'cpu', got {self.amp!r}")
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
    # in minutes on a CPU (docs/results.md).
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
    """Independent 63-bit seeds for each random stream of a training run, from its one seed."""
    return {stream: derive_seed(seed, "train", stream) for stream in ("init", "data")}
