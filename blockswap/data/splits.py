"""Splits: what the trainer and the search read, and how minibatches are sharded.

Small datasets live on the training device as uint8 tensors and minibatches are made there
(airbench style): normalisation and augmentation are batched tensor ops driven by a
`torch.Generator`, so a seed fixes every random choice. ImageNet streams from disk
(`data.imagefolder`); `data.load.load_split` opens any dataset. Every split shards its minibatches for data-parallel training
(`shard_batches`): each rank takes a contiguous slice of the same global minibatch, so 2
processes x 64 images see exactly the images (and augmentations) of 1 process x 128.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import torch

from ..errors import BlockSwapError
from ..seeding import derive_seed
from .augment import Augment, AugmentOffsets, _as_augment, apply_augment, draw_augment
from .sharding import BatchSizeCheck, epoch_order, shard_batches

class Split(Protocol):
    """One split of a dataset that yields normalised float minibatches on `device`.

    Sharding for data-parallel training: with ``world_size > 1`` every process draws the SAME
    global minibatch (same `generator` seed on every rank) and keeps its contiguous
    ``1/world_size`` slice, so the union over ranks is exactly the single-process minibatch,
    augmentation included (random choices are drawn for the whole global batch).
    """

    num_classes: int
    input_size: int

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: "bool | Augment" = False,
                generator: torch.Generator | None = None, drop_last: bool = False,
                rank: int = 0, world_size: int = 1, pad_last: bool = False,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def sample(self, batch_size: int, generator: torch.Generator,
               augment: "bool | Augment" = False) -> tuple[torch.Tensor, torch.Tensor]: ...

    def check_batch_size(self, batch_size: int, what: str = "split") -> None:
        """Raise `BlockSwapError` unless 1 <= batch_size <= len(self) (`sharding.BatchSizeCheck`)."""


class TensorSplit(BatchSizeCheck):
    """An in-memory split: uint8 images (N, 3, H, W) and int64 labels, kept on `device`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...], device: str | torch.device = "cpu"):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise BlockSwapError("TensorSplit needs uint8 images of shape (N, 3, H, W)")
        if images.shape[2] != images.shape[3]:
            raise BlockSwapError(f"images must be square, got {tuple(images.shape[2:])}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.num_classes = num_classes
        self.input_size = images.shape[2]
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255
        # A black pixel after normalisation: what torchvision's RandomCrop(padding=4) pads with
        # (it pads the raw image with 0, before Normalize), as in the authors' pipeline.
        self.black = -self.mean / self.std

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, n: int) -> "TensorSplit":
        """A fixed random `n` of these images (one seed for every run: all runs train on the same
        images), normalised with this split's statistics."""
        if not 1 <= n <= len(self):
            raise BlockSwapError(f"train_images {n} is more than the {len(self)} images of the training split")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(derive_seed(0, "train_images")))
        idx = idx[:n].sort().values.to(self.device)
        out = object.__new__(TensorSplit)
        out.__dict__.update(self.__dict__)
        out.images, out.labels = self.images[idx], self.labels[idx]
        return out

    def _prepare(self, idx: torch.Tensor, aug: Augment | None,
                 offsets: "AugmentOffsets | None") -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device)
        x = (self.images[idx].float() - self.mean) / self.std
        if aug is not None:
            x = apply_augment(x, offsets, aug, fill=self.black)
        return x, self.labels[idx]

    def batches(self, batch_size, *, shuffle=False, augment=False, generator=None, drop_last=False,
                rank=0, world_size=1, pad_last=False):
        aug = _as_augment(augment)
        order = epoch_order(len(self), shuffle, generator)
        for batch, pos in shard_batches(order, batch_size, rank, world_size, drop_last, pad_last):
            # Offsets are drawn for the whole global batch on every rank (generator in step).
            offsets = draw_augment(batch.shape[0], self.input_size, self.input_size, aug, generator) \
                if aug is not None else None
            if pos.numel():
                yield self._prepare(batch[pos], aug, None if offsets is None else offsets[pos])

    def sample(self, batch_size, generator, augment=False):
        self.check_batch_size(batch_size)
        aug = _as_augment(augment)
        idx = torch.randperm(len(self), generator=generator)[:batch_size]
        offsets = draw_augment(batch_size, self.input_size, self.input_size, aug, generator) \
            if aug is not None else None
        return self._prepare(idx, aug, offsets)
