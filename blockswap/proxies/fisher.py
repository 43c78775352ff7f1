"""The Fisher potential (paper Sec. 3.3 and 4): the ranking signal of BlockSwap.

A candidate at initialisation, BN in train mode, takes ONE minibatch of training data; the
mean cross-entropy loss L is backpropagated to a probe on the output ``a`` (N x C x H x W) of
each block's last conv, before the residual add, with gradient ``g = dL/da``. Per channel c::

    Delta_c = 1/(2N) * sum_n ( sum_ij a[n,c,i,j] * g[n,c,i,j] )^2

(Theis et al. 2018: the empirical Fisher information of a binary mask on channel c). A block's
Fisher is sum_c Delta_c; the potential is the sum over blocks, and higher is better.

Speed: only the gradients at the probes are needed, so autograd is asked for exactly those
(``torch.autograd.grad(loss, probe_outputs)``): no weight-gradient kernel runs and the backward
stops at the first probe. The channels-last memory format makes oneDNN's convolutions faster;
on the CPU, batch norm then runs through `nn.exact_bn` (the native channels-last kernel
accumulates its statistics in float32 and is up to 1e-2 off per block; see docs/search.md).

Overflow: a network that overflows (inputs of 1e30: BN's float32 variance is infinite and
every normalised activation 0) would give a potential of exactly 0 and win nothing silently;
a probe output that is non-finite or all zero is reported instead (`NonFiniteSignal`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from .execution import MEMORY_FORMATS, exact_run, precision_run
from .probes import probe_outputs
from .registry import NonFiniteSignal, ProxyOptions, check_batch, check_model, check_signal, output_classes

__all__ = ["MEMORY_FORMATS", "FisherPotential", "block_fisher", "check_probes", "fisher_potential", "probe_outputs"]


class FisherPotential(NamedTuple):
    """The Fisher potential of a network and each block's share (sum over its channels)."""

    total: float
    per_block: tuple[float, ...]


class _Checkpointed(nn.Module):
    """A block whose activations are recomputed in the backward pass (non-reentrant checkpoint).

    The forward runs in full with grad mode on, so BN still sees the whole batch and the probe
    outputs are ordinary graph nodes: the Fisher value is exactly that of the plain pass.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _checkpoint(self.block, x, use_reentrant=False)


@contextlib.contextmanager
def _checkpointed_blocks(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Wrap every block of every stage in `_Checkpointed` for the duration of the block."""
    if not enabled:
        yield
        return
    stages = list(model.stages)
    originals = [list(stage) for stage in stages]
    for stage, blocks in zip(stages, originals):
        for j, block in enumerate(blocks):
            stage[j] = _Checkpointed(block)
    try:
        yield
    finally:
        for stage, blocks in zip(stages, originals):
            for j, block in enumerate(blocks):
                stage[j] = block


@torch.no_grad()
def block_fisher(a: torch.Tensor, g: torch.Tensor, n: int) -> float:
    """sum_c 1/(2n) sum_examples (sum_ij a*g)^2 for one probe; n is the whole batch size."""
    # (examples, C): float32 sums over the H*W terms, then the squares and the sum over examples
    # and channels in float64; upcasting inside the spatial sum is slower and no more accurate
    # (docs/search.md). A bf16 probe (`precision="bf16"`) is upcast first: only float32 sums.
    if a.dtype != torch.float32 or g.dtype != torch.float32:
        a, g = a.float(), g.float()
    s = (a * g).sum(dim=(2, 3)).double()
    return float(s.pow(2).sum() / (2 * n))


def check_probes(acts: list[torch.Tensor], name: str) -> None:
    """Raise `NonFiniteSignal` if a probe output is non-finite or all zero: the network
    overflowed (or the minibatch is constant), and the potential would be NaN or exactly 0."""
    with torch.no_grad():
        for i, a in enumerate(acts):
            peak = float(a.detach().abs().amax()) if a.numel() else 0.0
            if not math.isfinite(peak) or peak == 0.0:
                what = "non-finite" if not math.isfinite(peak) else "all zero"
                raise NonFiniteSignal(f"ranking signal {name}: the activations of block {i} are {what} "
                                      "(overflow in the network, or a constant minibatch?); scale the inputs")


def fisher_potential(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                     checkpoint: bool = False, micro_batch: int | None = None,
                     memory_format: str = "channels_last", precision: str = "float32") -> FisherPotential:
    """The Fisher potential of `model` on one minibatch, with the value of every block.

    `model` is a `BlockSwapNet` (any module whose ``blocks`` each have a ``probe``); it is put in
    train mode (BN uses the batch statistics, as when training starts) and its weights are not
    changed (BN running statistics are updated, as in any train-mode forward). No weight
    gradients are computed and ``.grad`` is left untouched.

    `memory_format`: "channels_last" (default, fastest on CPUs and tensor cores) or
    "contiguous"; both give the exact value (on the CPU, BN runs through `exact_batch_norm`).
    The model is converted for the call and left in the layout it had.

    Memory: ``checkpoint=True`` recomputes each block during the backward pass; the value is
    identical (BN statistics are still over the whole batch). ``micro_batch=m`` pushes chunks of
    m examples one at a time and is APPROXIMATE: BN normalises each chunk by its own statistics.
    Each chunk's loss is weighted by m/N so that the gradients are those of the batch-mean loss.

    `precision`: "float32" (default, the paper's score) or "bf16": the forward pass under
    ``torch.autocast`` in bfloat16 (the backward follows it), APPROXIMATE (0.2%-4.6% from float32
    on WRN-40-2 students); for the screened search's first round (docs/search.md).

    Raises `BlockSwapError` for a minibatch it cannot use (`registry.check_batch`: non-finite
    inputs, labels outside the model's outputs, ...) and `NonFiniteSignal`, a `BlockSwapError`,
    if the potential is NaN or infinite.

    >>> import torch, blockswap
    >>> net = blockswap.build_model("wrn-10-1")
    >>> fp = blockswap.fisher_potential(net, torch.randn(8, 3, 32, 32), torch.arange(8) % 10)
    >>> len(fp.per_block), abs(fp.total - sum(fp.per_block)) < 1e-12
    (3, True)
    """
    check_model(model, inputs, blocks=True)
    ProxyOptions(checkpoint=checkpoint, micro_batch=micro_batch, memory_format=memory_format,
                 precision=precision)  # validates
    check_batch(inputs, targets, output_classes(model))
    n = inputs.shape[0]
    step = n if micro_batch is None else micro_batch
    per_block = np.zeros(len(model.blocks))
    with exact_run(model, inputs, memory_format) as laid_out:
        for start in range(0, n, step):
            x = laid_out[start:start + step]
            y = targets[start:start + step]
            # Hooks are gone before the backward pass, so a checkpoint's recomputation adds nothing.
            with probe_outputs(model) as acts, _checkpointed_blocks(model, checkpoint), \
                    precision_run(precision, x.device.type):
                logits = model(x)
            check_probes(acts, "fisher")
            # Sum over the chunk / N: the gradient of the batch-mean loss (authors' criterion).
            loss = F.cross_entropy(logits.float(), y, reduction="sum") / n
            grads = torch.autograd.grad(loss, acts)
            per_block += [block_fisher(a, g, n) for a, g in zip(acts, grads)]
            del acts, grads, logits, loss
    total = check_signal(float(per_block.sum()), "fisher")  # a NaN is an error, never a score
    return FisherPotential(total, tuple(float(v) for v in per_block))
