"""Layer plans and their analytic complexity (pycls style), with no `torch.nn` in sight.

A *plan* is a tuple of named layers (`Conv`, `Norm`, `Act`, `Shuffle`, `MaxPool`, `Pool`, `Linear`) run in
order. Every part of a network (stem, block bodies, head) is described by its plan; the cost
accounting walks the plan here, and `blockswap.nn` builds the modules from the very same plan,
so the analytic cost and the built network cannot disagree about a layer.

Units (used everywhere in BlockSwap):

* params: learnable scalars (conv/linear weights and biases, BN affine weight and bias; BN
  running statistics are buffers, not parameters) - what ``sum(p.numel())`` reports;
* macs: multiply-accumulates of conv and linear layers for ONE input image (not FLOPs: one MAC
  is two FLOPs in `torch.utils.flop_counter`); BN, ReLU, pooling and additions are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Union


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with 'same' padding (k // 2), no bias unless asked."""

    c_in: int
    c_out: int
    k: int
    stride: int = 1
    groups: int = 1
    bias: bool = False

    @property
    def padding(self) -> int:
        return self.k // 2


@dataclass(frozen=True)
class Norm:
    """Batch normalisation over `channels` (affine: 2 parameters per channel)."""

    channels: int


@dataclass(frozen=True)
class Act:
    """ReLU (no parameters, no MACs)."""


@dataclass(frozen=True)
class Shuffle:
    """Channel shuffle of `groups` groups (ShuffleNet): a permutation, no parameters, no MACs."""

    groups: int


@dataclass(frozen=True)
class MaxPool:
    k: int
    stride: int
    padding: int = 0


@dataclass(frozen=True)
class Pool:
    """Global average pooling followed by flattening to (N, C)."""


@dataclass(frozen=True)
class Linear:
    n_in: int
    n_out: int


Layer = Union[Conv, Norm, Act, Shuffle, MaxPool, Pool, Linear]
Plan = tuple[tuple[str, Layer], ...]  # (name, layer) pairs, applied in order


@dataclass(frozen=True)
class Complexity:
    """Running analytic cost through a network: spatial size, parameters and MACs (units above)."""

    h: int
    w: int
    params: int = 0
    macs: int = 0

    def conv(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1,
             padding: int | None = None, bias: bool = False) -> "Complexity":
        pad = k // 2 if padding is None else padding
        h = (self.h + 2 * pad - k) // stride + 1
        w = (self.w + 2 * pad - k) // stride + 1
        weights = c_out * (c_in // groups) * k * k
        params = weights + (c_out if bias else 0)
        return Complexity(h, w, self.params + params, self.macs + weights * h * w)

    def bn(self, channels: int) -> "Complexity":
        return replace(self, params=self.params + 2 * channels)

    def pool(self, k: int, stride: int, padding: int = 0) -> "Complexity":
        h = (self.h + 2 * padding - k) // stride + 1
        w = (self.w + 2 * padding - k) // stride + 1
        return replace(self, h=h, w=w)

    def linear(self, n_in: int, n_out: int) -> "Complexity":
        return replace(self, params=self.params + n_in * n_out + n_out, macs=self.macs + n_in * n_out)

    def layer(self, layer: Layer) -> "Complexity":
        """The cost of one plan layer on top of this one."""
        if isinstance(layer, Conv):
            return self.conv(layer.c_in, layer.c_out, layer.k, layer.stride, layer.groups, bias=layer.bias)
        if isinstance(layer, Norm):
            return self.bn(layer.channels)
        if isinstance(layer, MaxPool):
            return self.pool(layer.k, layer.stride, layer.padding)
        if isinstance(layer, Pool):
            return replace(self, h=1, w=1)
        if isinstance(layer, Linear):
            return self.linear(layer.n_in, layer.n_out)
        return self  # Act, Shuffle

    def walk(self, plan: Plan) -> "Complexity":
        """The cost of a whole plan on top of this one."""
        cx = self
        for _name, layer in plan:
            cx = cx.layer(layer)
        return cx

    def added(self, before: "Complexity") -> tuple[int, int]:
        """(params, macs) added between `before` and this point."""
        return self.params - before.params, self.macs - before.macs


def plan_cost(plan: Plan, h: int, w: int) -> tuple[int, int]:
    """(params, macs) of `plan` on an h x w input."""
    start = Complexity(h, w)
    return start.walk(plan).added(start)
