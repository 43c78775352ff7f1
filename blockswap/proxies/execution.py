"""How every ranking signal runs a network: one memory format, and on the CPU the exact
train-mode batch norm (`nn.exact_bn`) the Fisher potential uses; and which tensors are "the
weights" the weight-based signals sum over.

Why one path: PyTorch's native channels-last BN sums its float32 statistics naively; in the
search's channels-last path SNIP moved 5.6e-4..3.5e-3 from float64 with it, 2e-5..6e-5 with the
exact BN (issue 18). A signal that runs the network in train mode goes through `exact_run`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..errors import BlockSwapError, choices
from ..nn.exact_bn import exact_batch_norm
from ..registry import Registry

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}

# Arithmetic of a network's forward pass: name -> the autocast dtype (None: plain float32).
# "bf16" is for the screened search's first round only (docs/search.md, "Screened search"): the
# paper's score, which decides, is float32.
PRECISIONS: Registry["torch.dtype | None"] = Registry("precision")
PRECISIONS.add("float32", None)
PRECISIONS.add("bf16", torch.bfloat16)


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (the avx512_bf16 or amx_bf16 flag of
    /proc/cpuinfo). Without it bf16 still computes (emulated by oneDNN), only slower."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@contextlib.contextmanager
def precision_run(precision: str, device_type: str = "cpu") -> Iterator[None]:
    """The forward passes inside the block in `precision` (bf16: `torch.autocast`); float32 is
    no context at all, so the default path is untouched."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type, dtype=dtype):
        yield


def weights(model: nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights: what the field's proxies and the paper's "weights" count
    (zero-cost-nas ``get_layer_metric_array``; BN affine terms and biases excluded)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def memory_format(name: str) -> torch.memory_format:
    """The torch memory format called `name` ("channels_last" or "contiguous")."""
    if name not in MEMORY_FORMATS:
        raise BlockSwapError(f"unknown memory format {name!r}; valid: {choices(MEMORY_FORMATS)}")
    return MEMORY_FORMATS[name]


@contextlib.contextmanager
def model_memory_format(model: nn.Module, fmt: torch.memory_format) -> Iterator[None]:
    """`model`'s 4-D weights in `fmt` for the block, then back in the layout they had."""
    weights = [p for p in model.parameters() if p.ndim == 4]
    was_cl = bool(weights) and weights[0].is_contiguous(memory_format=torch.channels_last) \
        and not weights[0].is_contiguous()
    target = torch.channels_last if was_cl else torch.contiguous_format
    if target == fmt:
        yield
        return
    model.to(memory_format=fmt)
    try:
        yield
    finally:
        model.to(memory_format=target)


@contextlib.contextmanager
def exact_run(model: nn.Module, x: torch.Tensor, fmt: str = "channels_last") -> Iterator[torch.Tensor]:
    """Within the block `model` is in train mode and memory format `fmt`, its BN exact on the
    CPU; yields `x` in that format. The model's layout is restored on exit."""
    layout = memory_format(fmt)
    model.train()
    exact = exact_batch_norm(model) if x.device.type == "cpu" else contextlib.nullcontext()
    with model_memory_format(model, layout), exact:
        yield x.contiguous(memory_format=layout)
