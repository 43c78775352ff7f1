"""The one timing protocol of every latency figure: warm-up calls, then the median of repeats."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


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
