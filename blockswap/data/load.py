"""Open one split of any dataset by name (`spec.parse_data`)."""

from __future__ import annotations

import torch

from ..errors import BlockSwapError
from .sources import _channel_stats, _digits, _read_cifar, _resize_uint8, _synthetic
from .spec import _STATS, DataSpec, parse_data
from .imagefolder import ImageFolderSplit
from .splits import Split, TensorSplit


def load_split(data: "str | DataSpec", split: str = "train", input_size: int | None = None,
               device: str | torch.device = "cpu", workers: int = 4) -> Split:
    """Load `split` ("train" or "val") of `data`, images resized to `input_size` if given.

    `workers`: loader processes for ImageNet (the in-memory datasets need none).
    """
    spec = parse_data(data)
    if split not in ("train", "val"):
        raise BlockSwapError(f"unknown split {split!r}; valid splits: train, val")
    if spec.name == "coco":
        raise BlockSwapError(f"{spec} is detection data (COCO layout); classification needs cifar10:PATH, "
                             "cifar100:PATH, imagenet:PATH, digits or synthetic. Detectors: 'blockswap train "
                             "detector', 'blockswap search --task detection'")
    if spec.name == "imagenet":
        return ImageFolderSplit(spec.path, split, input_size or 224, device, workers)
    if spec.name in ("cifar10", "cifar100"):
        images, labels = _read_cifar(spec, split)
        mean, std = _STATS[spec.name]
    elif spec.name == "digits":
        images, labels = _digits(split, input_size or 32)
        mean, std = _channel_stats(_digits("train", input_size or 32)[0])
    else:
        images, labels = _synthetic(split, input_size or 32)
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    if input_size is not None and images.shape[2] != input_size:
        images = _resize_uint8(images, input_size)
    return TensorSplit(images, labels, spec.known_classes, mean, std, device)
