"""Modules built from a layer plan (`space.complexity`): each carries its plan, and so its
analytic `complexity`, next to `forward` (as pycls's modules do)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from torch import nn

from ..space.complexity import Act, Complexity, Conv, Layer, Linear, MaxPool, Norm, Plan, Pool, Shuffle

NormLayer = Callable[[int], nn.Module]  # channels -> a normalisation module (nn.BatchNorm2d)


def make_layer(layer: Layer, norm_layer: NormLayer = nn.BatchNorm2d) -> nn.Module:
    """The torch module of one plan layer."""
    if isinstance(layer, Conv):
        return nn.Conv2d(layer.c_in, layer.c_out, layer.k, stride=layer.stride, padding=layer.padding,
                         groups=layer.groups, bias=layer.bias)
    if isinstance(layer, Norm):
        return norm_layer(layer.channels)
    if isinstance(layer, Act):
        return nn.ReLU(inplace=True)
    if isinstance(layer, Shuffle):
        return nn.ChannelShuffle(layer.groups)
    if isinstance(layer, MaxPool):
        return nn.MaxPool2d(layer.k, stride=layer.stride, padding=layer.padding)
    if isinstance(layer, Pool):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    if isinstance(layer, Linear):
        return nn.Linear(layer.n_in, layer.n_out)
    raise TypeError(f"unknown plan layer {layer!r}")


class Layers(nn.Sequential):
    """The modules of a plan, applied in order, named as in the plan."""

    def __init__(self, plan: Plan, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__(OrderedDict((name, make_layer(layer, norm_layer)) for name, layer in plan))
        self.plan = plan

    def complexity(self, cx: Complexity) -> Complexity:
        """Analytic cost of these layers on top of `cx` (units in `space.complexity`)."""
        return cx.walk(self.plan)
