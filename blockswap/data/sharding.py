"""Epoch orders, the batch-size check and data-parallel sharding of minibatches, shared by every split."""

from __future__ import annotations

import numbers
from typing import Iterator

import torch

from ..errors import BlockSwapError


def shard_batches(order: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1,
                  drop_last: bool = False, pad_last: bool = False,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Cut an epoch's index `order` into global minibatches; yield (batch, positions) for `rank`.

    `batch_size` is the global minibatch (all ranks together; for training, with `pad_last`,
    a multiple of `world_size`); rank r takes ``batch[positions]``, a contiguous share. A last partial
    minibatch is kept unless `drop_last`; with `pad_last` its shares are made equal (DDP
    training needs every rank to step together) by wrapping around to the batch's first images
    (as `DistributedSampler` wraps to the epoch's first), so positions may exceed len(batch)
    modulo it. Without `pad_last` (evaluation: nothing counted twice) a rank may get fewer or
    no images. Random draws per image belong to ``batch``, so they never depend on the ranks.
    """
    if batch_size < 1:
        raise BlockSwapError(f"batch size must be a positive number of images, got {batch_size}")
    if not 0 <= rank < world_size:
        raise BlockSwapError(f"rank {rank} is outside 0..{world_size - 1}")
    if pad_last and batch_size % world_size:
        raise BlockSwapError(f"global batch size {batch_size} does not split evenly over "
                             f"{world_size} processes; use a multiple of {world_size}")
    n = order.shape[0]
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        batch = order[start:start + batch_size]
        m = batch.shape[0]
        padded = -(-m // world_size) * world_size if pad_last else m
        chunk = -(-padded // world_size)  # ceil
        lo, hi = min(rank * chunk, padded), min((rank + 1) * chunk, padded)
        yield batch, torch.arange(lo, hi) % m


def epoch_order(n: int, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    """The visiting order of an epoch: a permutation from `generator` (on CPU) or 0..n-1."""
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


class BatchSizeCheck:
    """The one check that a minibatch fits in a split, inherited by every split class, so that
    `search`, `train` and `Split.sample` refuse the same batch sizes with the same message."""

    def check_batch_size(self, batch_size: int, what: str = "split") -> None:
        """Refuse a `batch_size` that is not a positive integer or exceeds the split's images.

        `what` names the split in the message, e.g. ``"training split of cifar10:/data"``.
        """
        n = len(self)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise BlockSwapError(f"batch size must be a positive number of images, got {batch_size!r}")
        if batch_size > n:
            raise BlockSwapError(f"batch size {batch_size} is larger than the {what} ({n} images); "
                                 f"use a batch size of at most {n}")
