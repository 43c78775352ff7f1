"""Open one split of any dataset (a name from `spec.DATASETS`, or a user's own data objects)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import BlockSwapError, choices
from ..seeding import derive_seed
from .pixels import channel_stats, resize_uint8
from .spec import DataSpec, dataset_forms, parse_data
from .splits import Split, TensorSplit

SPLITS = ("train", "val")


def load_split(data: "str | DataSpec | Any", split: str = "train", input_size: int | None = None,
               device: str | torch.device = "cpu", workers: int = 4) -> Split:
    """Load `split` ("train" or "val") of `data`, images resized to `input_size` if given.

    `data`: a dataset name ("cifar10:PATH", "digits"), a `DataSpec`, or a user's own data (a
    torch Dataset of (image, label), a pair of tensors, a dict of those per split: `data.user`).
    `workers`: loader processes for ImageNet (the in-memory datasets need none).
    """
    spec = parse_data(data)
    if split not in SPLITS:
        raise BlockSwapError(f"unknown split {split!r}; valid splits: {choices(SPLITS)}")
    if spec.user is not None:
        size = input_size or spec.input_size
        images, labels = spec.user.splits[split]
        mean, std = _user_stats(spec, size)
        return TensorSplit(_sized(images, size), labels, spec.user.classes, mean, std, device)
    entry = spec.entry
    if entry.task != "classification":
        raise BlockSwapError(f"{spec} is {entry.task} data; classification needs "
                             f"{choices(dataset_forms('classification'))}. Detectors: 'blockswap train "
                             "detector', 'blockswap search --task detection'")
    size = input_size or entry.input_size
    if entry.stream is not None:
        return entry.stream(spec.path, split, size, device, workers)
    images, labels = _read(spec, split, size)
    mean, std = entry.stats or _train_stats(spec, size, images if split == "train" else None)
    return TensorSplit(images, labels, entry.classes or int(labels.max()) + 1, mean, std, device)


def _read(spec: DataSpec, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as stored, or, with ``?holdout=N``, carved from the training split."""
    if not spec.holdout:
        images, labels = spec.entry.read(spec.path, split, size)
        return _sized(images, size), labels
    images, labels = spec.entry.read(spec.path, "train", size)
    if spec.holdout >= len(labels):
        raise BlockSwapError(f"{spec}: holdout {spec.holdout} leaves no training images "
                             f"(the training split has {len(labels)}); use fewer")
    val, train = holdout_indices(len(labels), spec.holdout)
    idx = val if split == "val" else train
    return _sized(images[idx], size), labels[idx]


def holdout_indices(n: int, holdout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation and training indices of a split of `n` images with `holdout` carved out:
    a permutation by one fixed seed (not the run's: every run carves the same images), sorted."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(0, "holdout")))
    return order[:holdout].sort().values, order[holdout:].sort().values


def _sized(images: torch.Tensor, size: int) -> torch.Tensor:
    return images if images.shape[2:] == (size, size) else resize_uint8(images, size)


# Statistics of a training split as loaded at a size: both splits are normalised with them, so
# loading "val" alone reads the training split too; kept per (dataset, folder, size).
_TRAIN_STATS: dict[tuple[str, str | None, int, int], tuple] = {}


def _train_stats(spec: DataSpec, size: int, train_images: torch.Tensor | None):
    key = (spec.name, spec.path, size, spec.holdout)
    if key not in _TRAIN_STATS:
        if train_images is None:
            train_images = _read(spec, "train", size)[0]
        _TRAIN_STATS[key] = channel_stats(train_images)
    return _TRAIN_STATS[key]


def _user_stats(spec: DataSpec, size: int):
    return channel_stats(_sized(spec.user.splits["train"][0], size))
