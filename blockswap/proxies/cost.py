"""Cost signals: the candidate's parameters and MACs, as built (classifier included).

Why signals: at a fixed parameter budget the MACs of BlockSwap's candidates still vary 2-3x,
and on NAS-Bench-201 FLOPs rank architectures better than most zero-cost proxies (Abdelfattah
et al. 2021, Table 2); as a baseline or inside an aggregate (`ranking.MeanRank`) they cost no
forward pass. Higher is better (the larger network at equal budget). Units: `space.complexity`
(params: learnable scalars; MACs: conv and linear multiply-accumulates per image).
"""

from __future__ import annotations

from torch import nn

from ..errors import BlockSwapError
from .registry import register_proxy


def _complexity(model: nn.Module, x):
    """The model's analytic complexity on inputs shaped like `x` (square images)."""
    if not callable(getattr(model, "complexity", None)):
        raise BlockSwapError(f"the cost signals need a BlockSwap network (with complexity()), got {type(model).__name__}")
    h, w = x.shape[-2:]
    if h != w:
        raise BlockSwapError(f"the cost signals count square inputs; got {h} x {w} images")
    return model.complexity(int(h))


@register_proxy("params", higher_is_better=True, labels=False)
def _params(model, batches, steps, options):
    """Parameters of the network as built: learnable scalars, classifier included."""
    return float(_complexity(model, batches[0][0]).params)


@register_proxy("macs", higher_is_better=True, labels=False)
def _macs(model, batches, steps, options):
    """MACs per image of the network as built on the minibatch's image size (conv + linear)."""
    return float(_complexity(model, batches[0][0]).macs)
