"""One registry of ranking signals for untrained candidates, and the one ranking function.

Every signal has one signature, ``fn(model, batches, steps, options)``, and a higher-is-better
flag. A `Signal` is a registered proxy with the number of minibatches it sees ("fisher@10").
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import BlockSwapError, choices
from ..registry import Registry
from .execution import PRECISIONS, memory_format

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ProxyOptions:
    """How signals are computed (not which): memory trade-offs and the SGD of the ``@k`` signals."""

    checkpoint: bool = False  # exact: recompute each block in the backward pass, less memory
    micro_batch: int | None = None  # APPROXIMATE: BN statistics per chunk of this many examples
    memory_format: str = "channels_last"  # or "contiguous": the same value, another speed
    # "float32", or "bf16" (autocast, APPROXIMATE: 0.2%-4.6% off on WRN-40-2; the Fisher potential
    # only, for the screened search's first round)
    precision: str = "float32"
    lr: float = 0.1  # SGD of the "@k" signals, as the authors' one_shot_fisher (0.1, 0.9, 5e-4)
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        memory_format(self.memory_format)  # a known name, else one line naming the valid ones
        PRECISIONS.get(self.precision)
        if self.micro_batch is not None and (not isinstance(self.micro_batch, int) or self.micro_batch < 2):
            raise BlockSwapError(f"micro_batch must be an integer >= 2 (BN needs two examples), got {self.micro_batch!r}")
        if self.micro_batch is not None and self.checkpoint:
            raise BlockSwapError("choose one of checkpoint (exact) and micro_batch (approximate), not both")


ProxyFn = Callable[[nn.Module, Sequence[Batch], int, ProxyOptions], Any]


class NonFiniteSignal(BlockSwapError):
    """A signal came out NaN, or infinite in its better direction: it cannot be ranked."""


def output_classes(model: nn.Module) -> int | None:
    """The model's output width: the ``out_features`` of its last `nn.Linear` (None if it has none)."""
    width = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            width = m.out_features
    return width


def check_model(model: nn.Module, inputs: torch.Tensor, blocks: bool = False) -> None:
    """Refuse a model a signal cannot run on `inputs`, naming the argument (issue 21): not a
    module, no probed ``blocks`` (with `blocks`), or inputs of another channel count, dtype or
    device than its first conv. Without this, torch fails deep inside with a raw error."""
    if not isinstance(model, nn.Module):
        raise BlockSwapError(f"model must be a torch.nn.Module (a BlockSwap network), got {type(model).__name__}")
    if blocks and not (isinstance(getattr(model, "blocks", None), (list, tuple, nn.ModuleList)) and model.blocks
                       and all(isinstance(getattr(b, "probe", None), nn.Module) for b in model.blocks)):
        raise BlockSwapError(f"model must be a BlockSwap network (blocks with a probe, e.g. blockswap.build_model), "
                             f"got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        return  # check_batch names the problem
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return
    if inputs.shape[1] != conv.in_channels:
        raise BlockSwapError(f"inputs have {inputs.shape[1]} channels but the model's first conv takes "
                             f"{conv.in_channels}: give (N, {conv.in_channels}, H, W) inputs")
    if inputs.dtype != conv.weight.dtype:
        raise BlockSwapError(f"inputs are {inputs.dtype} but the model's weights are {conv.weight.dtype}: "
                             "convert one to the other (inputs.to(dtype) or model.to(dtype))")
    if inputs.device != conv.weight.device:
        raise BlockSwapError(f"inputs are on {inputs.device} but the model is on {conv.weight.device}: "
                             "move one to the other")


def check_batch(inputs: torch.Tensor, targets: torch.Tensor | None, num_classes: int | None) -> None:
    """Refuse a minibatch a signal cannot use, with one line naming the bad value.

    `inputs`: a floating (N, C, H, W) tensor of finite values, N >= 2 (train-mode BN needs two
    examples). `targets`: N integer labels in [0, num_classes), or None for a signal that reads
    no labels. Without this, torch fails deep inside cross_entropy, or the signal is NaN.
    """
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point() or inputs.ndim != 4:
        got = f"{inputs.dtype} of shape {tuple(inputs.shape)}" if isinstance(inputs, torch.Tensor) \
            else type(inputs).__name__
        raise BlockSwapError(f"inputs must be a floating-point tensor (N, C, H, W), got {got}")
    if targets is not None:
        if not isinstance(targets, torch.Tensor) or targets.ndim != 1 or targets.is_floating_point() \
                or targets.is_complex() or targets.dtype == torch.bool:
            got = f"{targets.dtype} of shape {tuple(targets.shape)}" if isinstance(targets, torch.Tensor) \
                else type(targets).__name__
            raise BlockSwapError(f"targets must be a 1-D tensor of integer class labels, got {got}")
        if targets.shape[0] != inputs.shape[0]:
            raise BlockSwapError(f"a minibatch needs one target per input: got {inputs.shape[0]} inputs "
                                 f"and {targets.shape[0]} targets")
    if inputs.shape[0] < 2:
        raise BlockSwapError(f"a minibatch needs at least 2 examples (train-mode BN), got {inputs.shape[0]}")
    bad = int((~torch.isfinite(inputs)).sum())
    if bad:
        raise BlockSwapError(f"inputs hold {bad} NaN/inf values; give finite inputs")
    if targets is not None:
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            bounds = f"[0, {num_classes})" if num_classes is not None else "[0, classes)"
            raise BlockSwapError(f"labels must be in {bounds} (the model's outputs): got min {lo}, max {hi}")


def check_signal(value: float, name: str, higher_is_better: bool = True) -> float:
    """`value` if it can be ranked; NaN, or infinity toward "better" (it would beat every finite
    score), raise `NonFiniteSignal`. Infinity toward "worse" is kept: signals return it on
    purpose for a degenerate network (e.g. naswot's singular kernel), and it ranks last."""
    if math.isnan(value) or value == (math.inf if higher_is_better else -math.inf):
        raise NonFiniteSignal(f"ranking signal {name} is {value} for this network and minibatch "
                              "(overflow in the network at initialisation?); it cannot be ranked")
    return value


@dataclass(frozen=True)
class Proxy:
    """A ranking signal: ``fn(model, batches, steps, options)`` on a freshly initialised model.

    `fn` checks its minibatches (`check_batch`) and its value (`check_signal`) around the
    registered function, however it is called."""

    name: str
    fn: ProxyFn
    higher_is_better: bool
    trains: bool  # True: takes `steps` SGD steps on batches[:steps] ("name@k"); else steps == 1
    doc: str
    labels: bool = True  # False: the signal reads no labels (targets may be None)


PROXIES: Registry[Proxy] = Registry("ranking signal")


def register_proxy(name: str, *, higher_is_better: bool, trains: bool = False,
                   labels: bool = True) -> Callable[[ProxyFn], ProxyFn]:
    """Function decorator: register a ranking signal under `name` (a new name only).

    `labels=False` for a signal that reads only the inputs. The registry, not each signal,
    checks the minibatches and the result, so every signal refuses the same bad input."""

    def wrap(fn: ProxyFn) -> ProxyFn:
        @functools.wraps(fn)
        def checked(model: nn.Module, batches: Sequence[Batch], steps: int, options: ProxyOptions) -> Any:
            if not batches:
                raise BlockSwapError(f"ranking signal {name} needs at least one (inputs, targets) minibatch")
            check_model(model, batches[0][0])
            classes = output_classes(model)
            for x, y in batches[:max(steps, 1)]:
                check_batch(x, y if labels else None, classes)
            result = fn(model, batches, steps, options)
            value = result.total if hasattr(result, "total") else result  # FisherPotential
            check_signal(float(value), name if steps == 1 else f"{name}@{steps}", higher_is_better)
            return result

        PROXIES.add(name, Proxy(name, checked, higher_is_better, trains,
                                (fn.__doc__ or "").strip().splitlines()[0], labels))
        return fn

    return wrap


def get_proxy(name: str) -> Proxy:
    if name not in PROXIES:
        raise BlockSwapError(f"unknown ranking signal {name!r}; valid signals: {choices(PROXIES)} "
                             f"(training signals take '@k' minibatches, e.g. fisher@10){PROXIES.suggest(name)}")
    return PROXIES[name]


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

    @property
    def components(self) -> tuple["Signal", ...]:
        """The signals a ranking by this one needs computed: itself (an aggregate: several)."""
        return (self,)

    def scores(self, values: Mapping[int, Mapping[str, "float | None"]]) -> dict[int, "float | None"]:
        """Each candidate's value of this signal, from its {signal name: value} record."""
        return {i: v.get(self.name) for i, v in values.items()}

    def order(self, values: Mapping[int, Mapping[str, "float | None"]]) -> list[int]:
        """Candidate keys, best first (`rank`), from their {signal name: value} records."""
        return rank(self.scores(values), self.higher_is_better)

    def __call__(self, model: nn.Module, batches: Sequence[Batch], options: ProxyOptions = ProxyOptions()):
        """The signal of `model` on `batches`. A training signal (``name@k``) takes its k SGD
        steps on `model` itself, as the search wants for a throw-away candidate: pass a copy
        to keep the original weights."""
        if not isinstance(batches, Sequence) or isinstance(batches, torch.Tensor):
            raise BlockSwapError(f"signal {self.name} takes a list of (inputs, targets) minibatches, "
                                 f"got {type(batches).__name__}")
        if len(batches) < self.steps:
            raise BlockSwapError(f"signal {self.name} needs {self.steps} minibatches, got {len(batches)}")
        return get_proxy(self.proxy).fn(model, batches, self.steps, options)


_SIGNAL = re.compile(r"^(?P<proxy>[a-z_0-9]+?)(?:@(?P<steps>[0-9]+))?$")
# BlockSwap 0.1's names of the paper's Table 1 signals, still read (experiment presets and
# stored results use them): "l2[@k]" is weight_l2@k, "grad_norm@k" (written with @k) grad_l1@k;
# plain "grad_norm" is the field's (zero-cost-nas) gradient norm.
_LEGACY = {"l2": "weight_l2"}
_LEGACY_AT = {"grad_norm": "grad_l1"}


def parse_signal(text: "str | Signal") -> Signal:
    """'fisher' -> Signal('fisher', 1); 'fisher@10' -> Signal('fisher', 10); 'snip'."""
    if isinstance(text, Signal):
        return text
    match = _SIGNAL.match(str(text).strip().lower())
    if not match:
        raise BlockSwapError(f"bad ranking signal {text!r}: write a name, or name@k for k training "
                             f"minibatches; valid names: {choices(PROXIES)}")
    name = _LEGACY.get(match["proxy"], match["proxy"])
    if match["steps"] is not None:
        name = _LEGACY_AT.get(name, name)
    proxy = get_proxy(name)
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
