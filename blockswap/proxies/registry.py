"""One registry of ranking signals for untrained candidates, and the one ranking function.

Every signal has one signature, ``fn(model, batches, steps, options)``, and a higher-is-better
flag. A `Signal` is a registered proxy with the number of minibatches it sees ("fisher@10").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import BlockSwapError, choices

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ProxyOptions:
    """How signals are computed (not which): memory trade-offs and the SGD of the ``@k`` signals."""

    checkpoint: bool = False  # exact: recompute each block in the backward pass, less memory
    micro_batch: int | None = None  # APPROXIMATE: BN statistics per chunk of this many examples
    memory_format: str = "channels_last"  # or "contiguous": the same value, another speed
    lr: float = 0.1  # SGD of the "@k" signals, as the authors' one_shot_fisher (0.1, 0.9, 5e-4)
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.micro_batch is not None and (not isinstance(self.micro_batch, int) or self.micro_batch < 2):
            raise BlockSwapError(f"micro_batch must be an integer >= 2 (BN needs two examples), got {self.micro_batch!r}")
        if self.micro_batch is not None and self.checkpoint:
            raise BlockSwapError("choose one of checkpoint (exact) and micro_batch (approximate), not both")


ProxyFn = Callable[[nn.Module, Sequence[Batch], int, ProxyOptions], Any]


@dataclass(frozen=True)
class Proxy:
    """A ranking signal: ``fn(model, batches, steps, options)`` on a freshly initialised model."""

    name: str
    fn: ProxyFn
    higher_is_better: bool
    trains: bool  # True: takes `steps` SGD steps on batches[:steps] ("name@k"); else steps == 1
    doc: str


PROXIES: dict[str, Proxy] = {}


def register_proxy(name: str, *, higher_is_better: bool, trains: bool = False) -> Callable[[ProxyFn], ProxyFn]:
    """Function decorator: register a ranking signal under `name` (a new name only)."""

    def wrap(fn: ProxyFn) -> ProxyFn:
        if name in PROXIES:
            raise BlockSwapError(f"ranking signal {name!r} is already registered")
        PROXIES[name] = Proxy(name, fn, higher_is_better, trains, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return wrap


def get_proxy(name: str) -> Proxy:
    try:
        return PROXIES[name]
    except KeyError:
        raise BlockSwapError(f"unknown ranking signal {name!r}; valid signals: {choices(PROXIES)} "
                             "(training signals take '@k' minibatches, e.g. fisher@10)") from None


@dataclass(frozen=True)
class Signal:
    """A registered proxy and the number of minibatches it sees (k of "fisher@k")."""

    proxy: str
    steps: int = 1

    @property
    def name(self) -> str:
        return self.proxy if self.steps == 1 else f"{self.proxy}@{self.steps}"

    @property
    def higher_is_better(self) -> bool:
        return get_proxy(self.proxy).higher_is_better

    def __call__(self, model: nn.Module, batches: Sequence[Batch], options: ProxyOptions = ProxyOptions()):
        """The signal of `model` on `batches`. A training signal (``name@k``) takes its k SGD
        steps on `model` itself, as the search wants for a throw-away candidate: pass a copy
        to keep the original weights."""
        if len(batches) < self.steps:
            raise BlockSwapError(f"signal {self.name} needs {self.steps} minibatches, got {len(batches)}")
        return get_proxy(self.proxy).fn(model, batches, self.steps, options)


_SIGNAL = re.compile(r"^(?P<proxy>[a-z_0-9]+?)(?:@(?P<steps>[0-9]+))?$")


def parse_signal(text: "str | Signal") -> Signal:
    """'fisher' -> Signal('fisher', 1); 'fisher@10' -> Signal('fisher', 10); 'snip'."""
    if isinstance(text, Signal):
        return text
    match = _SIGNAL.match(str(text).strip().lower())
    if not match:
        raise BlockSwapError(f"bad ranking signal {text!r}: write a name, or name@k for k training "
                             f"minibatches; valid names: {choices(PROXIES)}")
    proxy = get_proxy(match["proxy"])
    steps = int(match["steps"] or 1)
    if steps < 1:
        raise BlockSwapError(f"ranking signal {text!r}: k in name@k must be >= 1")
    if steps > 1 and not proxy.trains:
        raise BlockSwapError(f"ranking signal {proxy.name} uses one minibatch at initialisation; "
                             f"write {proxy.name}, not {text}")
    return Signal(proxy.name, steps)


def rank(scores: Mapping[int, "float | None"], higher_is_better: bool = True) -> list[int]:
    """Keys of `scores`, best first. A missing or NaN score ranks last; ties go to the lower key,
    so the order never depends on dict order, process or executor."""
    sign = -1.0 if higher_is_better else 1.0

    def key(idx: int) -> tuple[float, int]:
        s = scores[idx]
        if s is None or math.isnan(s):
            return (math.inf, idx)
        return (sign * s, idx)

    return sorted(scores, key=key)
