"""The one timing protocol of every latency figure: warm-up calls, then the median of repeats,
reported with its spread; a spread above `NOISY_SPREAD` marks the machine as too noisy for the
figure to be taken as a speed."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

# Relative spread of the repeats above which a median is not reported as a speed: the middle
# half of the calls disagreeing by more than a fifth means another process took the CPU for a
# good part of the measurement, and the median says more about that process than the network.
NOISY_SPREAD = 0.20


def median_seconds(run: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, float]:
    """(median, relative spread) of the wall time of `run()` after `warmup` calls.

    The spread is the interquartile range of the repeats over their median (0.0 for fewer than
    two repeats): how far the middle half of the calls disagree. Like the median it ignores a
    single outlier call, which the range (max - min) would turn into a spread of thousands of
    percent.
    """
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    mid = statistics.median(times)
    if len(times) < 2:
        return mid, 0.0
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return mid, (q3 - q1) / mid


def is_noisy(spread: float) -> bool:
    return spread > NOISY_SPREAD


def format_ms(seconds: float, spread: float) -> str:
    """'12.34 ms +- 3%', or for a noisy measurement 'noisy (12.34 ms, spread 45% > 20%)'."""
    if is_noisy(spread):
        return f"noisy ({1e3 * seconds:.2f} ms, spread {spread:.0%} > {NOISY_SPREAD:.0%})"
    return f"{1e3 * seconds:.2f} ms +- {spread:.0%}"


def noisy_note(count: int, total: int, rerun: str = "rerun on an idle machine") -> str:
    """The line printed under timings of which `count` of `total` were noisy."""
    return (f"note: {count} of {total} timings spread by more than {NOISY_SPREAD:.0%} between repeats: this machine "
            f"was busy (another process on the CPU), so they are not reported as speeds; {rerun}")


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
