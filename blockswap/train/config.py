"""Training settings: one frozen `TrainConfig`, named recipes (paper Sec. 5 and 6), run seeds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from ..data.augment import Augment
from ..errors import BlockSwapError, choices
from ..registry import Registry
from ..fields import check_fields, rules
from ..seeding import derive_seed

SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Defaults: the paper's CIFAR recipe (Sec. 5)."""

    # Each field's range is its `fields.rules` metadata; `check_fields` also refuses a value of
    # the wrong type ("false" for a boolean, 1.5 epochs, a NaN or infinite rate), naming the field.
    recipe: str = "cifar"  # name of the preset these values started from (recorded only)
    epochs: int = field(default=200, metadata=rules(min=1))  # passes over the training set
    # images per optimiser step, summed over all data-parallel processes
    batch_size: int = field(default=128, metadata=rules(min=1))
    lr: float = field(default=0.1, metadata=rules(above=0))  # initial learning rate
    momentum: float = field(default=0.9, metadata=rules(min=0))  # SGD momentum (plain, not Nesterov, as the authors)
    # train on a fixed random subset of this many training images (the same images in every run,
    # whatever its seed); 0: the whole training split. Not the paper's: short CPU protocols.
    train_images: int = field(default=0, metadata=rules(min=0))
    # L2 penalty on every parameter, BN included (the authors' SGD)
    weight_decay: float = field(default=5e-4, metadata=rules(min=0))
    # "cosine": annealed to 0 over all epochs; "step": x step_gamma every step_epochs
    schedule: str = field(default="cosine", metadata=rules(choices=SCHEDULES))
    step_epochs: int = field(default=30, metadata=rules(min=1))  # epochs between drops of the "step" schedule
    step_gamma: float = field(default=0.1, metadata=rules(above=0))  # factor of each drop of the "step" schedule
    augment: bool = True  # CIFAR-style crop+flip+Cutout (ImageNet: RandomResizedCrop+flip)
    crop_pad: int = field(default=4, metadata=rules(min=0))  # pixels of black padding per side before the crop
    flip: bool = True  # random horizontal flips
    cutout: int = field(default=16, metadata=rules(min=0))  # side of the Cutout hole in pixels; 0 disables Cutout
    # attention-transfer weight (paper: 1000 CIFAR, 750 ImageNet); students only
    beta: float = field(default=1000.0, metadata=rules(min=0))
    # Hinton KD mixing weight in [0, 1]; 0 disables KD; students only
    kd_weight: float = field(default=0.0, metadata=rules(min=0, max=1))
    kd_temperature: float = field(default=4.0, metadata=rules(above=0))  # KD softmax temperature
    # the one seed all randomness derives from (model init, data order, augmentation)
    seed: int = field(default=0, metadata=rules(min=0))
    eval_batch_size: int = field(default=500, metadata=rules(min=1))  # images per evaluation step (no effect on results)
    workers: int = field(default=4, metadata=rules(min=0))  # ImageNet loader processes per training process
    # Mixed precision. "auto": where the device computes it natively: CUDA (bf16, or fp16 with
    # loss scaling) and CPUs with AVX512-BF16 or AMX (bf16 autocast), float32 elsewhere; True: the
    # same, refused on a CPU without bf16 instructions; False: float32 everywhere. The run's record
    # states what it ran in ("precision"); bf16's accuracy and speed are in docs/results.md.
    amp: bool | str = "auto"
    channels_last: bool = True  # NHWC memory format on CUDA; ignored on CPU

    def __post_init__(self) -> None:
        check_fields(self)
        if self.amp == "cpu":  # the 0.2 spelling of True (bf16 on the CPU too)
            object.__setattr__(self, "amp", True)
        if not (isinstance(self.amp, bool) or self.amp == "auto"):
            raise BlockSwapError(f"amp must be True, False or 'auto', got {self.amp!r}")

    @property
    def augmentation(self) -> Augment | None:
        return Augment(self.crop_pad, self.flip, self.cutout) if self.augment else None


# Fields that may differ when a run resumes: they change speed or memory, never the numbers.
RUNTIME_FIELDS = frozenset({"eval_batch_size", "workers"})
# `amp` is a request; what a run computes in is its identity's "precision" (the same request can
# mean bf16 on one CPU and float32 on another), so a resumed run compares the precision instead.
RESUME_RUNTIME_FIELDS = RUNTIME_FIELDS | {"amp"}

_CIFAR = TrainConfig()
RECIPES: Registry[TrainConfig] = Registry("recipe")
# Paper Sec. 5: 200 epochs, SGD 0.9, lr 0.1 cosine to 0, batch 128, wd 5e-4, crop+flip+Cutout.
RECIPES.add("cifar", _CIFAR)
# Paper Sec. 6: 100 epochs, lr 0.1 divided by 10 every 30 epochs, batch 256, wd 1e-4, AT beta 750.
RECIPES.add("imagenet", replace(_CIFAR, recipe="imagenet", epochs=100, batch_size=256, weight_decay=1e-4,
                                schedule="step", step_epochs=30, step_gamma=0.1, beta=750.0))
# Not in the paper: the CIFAR recipe shortened so a WRN-16-2 on the bundled digits trains
# in minutes on a CPU (docs/results.md).
RECIPES.add("digits", replace(_CIFAR, recipe="digits", epochs=30))


def recipe(name: str = "cifar", **overrides: Any) -> TrainConfig:
    """The preset `name` with fields replaced by `overrides` (None values are ignored)."""
    base = RECIPES[name]  # unknown: the valid recipes and the nearest
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"recipe"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise BlockSwapError(f"unknown training setting {unknown[0]!r}; valid settings: {choices(sorted(fields))}")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def run_seeds(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for each random stream of a training run, from its one seed."""
    return {stream: derive_seed(seed, "train", stream) for stream in ("init", "data")}
