"""The one timing protocol of every latency figure: warm-up calls, then the median of repeats."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn


def median_seconds(run: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, float]:
    """(median, relative spread) of the wall time of `run()` after `warmup` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    mid = statistics.median(times)
    return mid, (max(times) - min(times)) / mid


def eager_call(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A zero-argument call of `module(x)` in PyTorch under `torch.inference_mode`."""

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def session_call(session: Any, x: torch.Tensor) -> Callable[[], Any]:
    """A zero-argument onnxruntime call of `session` on `x` (converted to numpy once)."""
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)
