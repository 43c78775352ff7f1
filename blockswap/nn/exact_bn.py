"""PLACEHOLDER (replaced by the measured implementation): exact train-mode BN via the contiguous kernel."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def exact_batch_norm(model: nn.Module) -> Iterator[None]:
    patched = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            def fwd(x, m=m):
                if not m.training:
                    return type(m).forward(m, x)
                out = type(m).forward(m, x.contiguous())
                return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) else out
            m.forward = fwd
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward
