"""The swappable pre-activation residual block (paper Sec. 3.1; types in `space.blocks`)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BlockSwapError
from ..space.blocks import BlockType, parse_block
from ..space.complexity import Complexity
from ..space.costs import block_complexity, block_layers
from .layers import Layers, NormLayer, make_layer


class Block(nn.Module):
    """A pre-activation residual block of type `block_type`::

        o = ReLU(BN(x));  out = probe(body(o)) + (x or shortcut(o))

    `probe` is an identity on the residual branch right after its last conv (before the
    residual add): the Fisher potential (paper Sec. 4) hooks it to read the activation and its
    gradient without touching the block's code. The shortcut is the identity when the shape is
    kept, else a strided 1x1 conv without BN on the pre-activated input.
    """

    def __init__(self, block_type: "BlockType | str", c_in: int, c_out: int, stride: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        block_type = parse_block(block_type)
        problem = block_type.problem(c_in, c_out)
        if problem:
            raise BlockSwapError(f"block type {block_type} cannot map {c_in}->{c_out} channels: {problem}")
        self.block_type = block_type
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        pre, body, shortcut = block_layers(block_type, c_in, c_out, stride)
        self.bn = make_layer(pre[0][1], norm_layer)
        self.relu = nn.ReLU(inplace=True)
        self.body = Layers(body, norm_layer)
        self.probe = nn.Identity()
        self.shortcut = make_layer(shortcut[0][1]) if shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.relu(self.bn(x))
        out = self.probe(self.body(o))
        return out + (x if self.shortcut is None else self.shortcut(o))

    def complexity(self, cx: Complexity) -> Complexity:
        """Analytic cost of this block on top of `cx` (whose h, w is the block's input size)."""
        return block_complexity(self.block_type, self.c_in, self.c_out, self.stride, cx)

    def extra_repr(self) -> str:
        return f"{self.block_type}, {self.c_in}->{self.c_out}, stride={self.stride}"
