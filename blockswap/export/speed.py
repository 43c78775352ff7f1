"""Measured speed of a student next to its teacher, on this machine (paper Sec. 8: networks
chosen by inference time; what a user who ships the student asks first).

Every network runs in every runtime at every batch size in one process, one after the other,
with the same protocol (warm-up, then the median of repeats), so the figures can be compared
side by side. Nothing here is asserted: timings are reported, with the CPU model, the torch
build and the thread count they were measured with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import BlockSwapError, choices
from .timing import eager_call, is_noisy, median_seconds, session_call

RUNTIMES = ("torch", "torch-channels-last", "onnxruntime")


@dataclass(frozen=True)
class Timing:
    network: str  # label, e.g. "student" / "teacher"
    runtime: str  # one of RUNTIMES
    batch_size: int
    seconds: float  # median latency of one batch
    spread: float  # interquartile range / median of the repeats (`timing.median_seconds`)

    @property
    def noisy(self) -> bool:  # spread above timing.NOISY_SPREAD: not a speed to report
        return is_noisy(self.spread)

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "runtime": self.runtime, "batch_size": self.batch_size,
                "ms": 1e3 * self.seconds, "images_per_s": self.images_per_second, "spread": self.spread,
                "noisy": self.noisy}


def benchmark(networks: dict[str, nn.Module], input_size: int, *, batch_sizes: Sequence[int] = (1, 64),
              runtimes: Sequence[str] = RUNTIMES, warmup: int = 3, repeats: int = 10, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> list[Timing]:
    """Latency and throughput of each network (eval mode, CPU) in each runtime and batch size."""
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise BlockSwapError(f"unknown runtime {unknown[0]!r}; valid runtimes: {choices(RUNTIMES)}")
    if any(b < 1 for b in batch_sizes):
        raise BlockSwapError(f"batch sizes must be positive, got {list(batch_sizes)}")
    gen = torch.Generator().manual_seed(seed)
    inputs = {b: torch.randn(b, 3, input_size, input_size, generator=gen) for b in batch_sizes}
    out = []
    for label, net in networks.items():
        net = net.eval()
        for runtime in runtimes:
            for b, run in _runners(net, runtime, inputs, input_size):
                if progress:
                    progress(f"{label}, {runtime}, batch {b}")
                seconds, spread = median_seconds(run, warmup, repeats)
                out.append(Timing(label, runtime, b, seconds, spread))
    return out


def _runners(net: nn.Module, runtime: str, inputs: dict[int, torch.Tensor], input_size: int):
    """(batch size, zero-argument callable) for each batch size, in `runtime`."""
    if runtime == "onnxruntime":
        from .onnx import module_session

        session = module_session(net, (2, 3, input_size, input_size))  # one export, dynamic batch
        return [(b, session_call(session, x)) for b, x in inputs.items()]
    if runtime == "torch-channels-last":
        net = copy.deepcopy(net).to(memory_format=torch.channels_last)
        return [(b, eager_call(net, x.contiguous(memory_format=torch.channels_last))) for b, x in inputs.items()]
    return [(b, eager_call(net, x)) for b, x in inputs.items()]
