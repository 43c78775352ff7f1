"""Hooking the blocks' probes, written once (paper Sec. 4: the Fisher potential reads each
block's last-conv output ``a`` before the residual add, and dL/da).

Every `Block` carries ``probe``, an identity right after its last conv. `probe_outputs` hooks
the probes of a `BlockSwapNet`; `block_probe_outputs` the probes of any list of blocks (a
detector's backbone: `nn.detection.detector_blocks`). The hooks are removed on exit, before the
caller's backward pass, so a checkpointed block's recomputation does not append twice.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from torch import nn

from ..errors import BlockSwapError


@contextlib.contextmanager
def block_probe_outputs(blocks: Iterable[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Within the block, the list fills with each block's probe output, in forward order."""
    blocks = list(blocks)
    missing = [type(b).__name__ for b in blocks if not isinstance(getattr(b, "probe", None), nn.Module)]
    if missing or not blocks:
        raise BlockSwapError(f"the Fisher potential needs blocks with a `probe` module (BlockSwap blocks); "
                             f"got {', '.join(missing) if missing else 'no blocks'}")
    outputs: list[torch.Tensor] = []
    handles = [b.probe.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for b in blocks]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def probe_outputs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """`block_probe_outputs` of ``model.blocks`` (a `BlockSwapNet`)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise BlockSwapError(f"the Fisher potential needs a BlockSwap network (with `blocks`), "
                             f"got {type(model).__name__}")
    with block_probe_outputs(blocks) as outputs:
        yield outputs
