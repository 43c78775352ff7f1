"""Exact costs of a genotype without building it: parameters and MACs (paper Sec. 4, step 1).

A conv with c_in, c_out, kernel k and g groups has c_in*c_out*k*k/g weights and as many
multiply-accumulates per output pixel; a network's cost is the sum over its blocks (each
`Block.complexity`) plus the stem and head. Units:

* params: learnable scalars, BN affine weight and bias included, running statistics excluded
  (what ``sum(p.numel() for p in model.parameters())`` reports);
* macs: conv + linear multiply-accumulates for ONE input image (half of what
  ``torch.utils.flop_counter.FlopCounterMode`` reports as FLOPs).

`CostTable` precomputes every (block position, candidate type) pair once so that rejection
sampling costs thousands of genotypes per millisecond with numpy.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .blocks import Block, BlockType, Complexity
from .errors import BlockSwapError, choices
from .models import BlockSlot, NetworkSpec, network_spec


@dataclass(frozen=True)
class BlockCost:
    index: int
    stage: int
    block: str
    c_in: int
    c_out: int
    stride: int
    params: int
    macs: int


@dataclass(frozen=True)
class NetworkCost:
    """Cost of one network: totals, the fixed stem+head part, and every block."""

    network: str
    genotype: str
    input_size: int
    num_classes: int
    params: int
    macs: int
    fixed_params: int  # stem + head (1,978 for WRN-40-2 with 10 classes)
    fixed_macs: int
    per_block: tuple[BlockCost, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def block_cost(block: BlockType | str, slot: BlockSlot) -> tuple[int, int]:
    """(params, macs) of one block of type `block` at position `slot`."""
    return Block.complexity(block, slot.c_in, slot.c_out, slot.stride, Complexity(slot.h, slot.w)) \
        - Complexity(0, 0)


def fixed_cost(spec: NetworkSpec, input_size: int | None = None) -> tuple[int, int]:
    """(params, macs) of everything but the swappable blocks: stem, final BN, classifier."""
    stem = spec.stem_complexity(input_size)
    head = spec.head_complexity()
    return stem.params + head.params, stem.macs + head.macs


def cost(name: str, genotype=None, input_size: int | None = None,
         num_classes: int | None = None) -> NetworkCost:
    """Parameters and MACs of network `name` with `genotype` (None: all standard blocks).

    `input_size` is the square input side (default 32 for WRNs, 224 for ResNets); it changes
    MACs, not parameters.

    >>> cost("wrn-40-2").params
    2243546
    """
    from .genotype import Genotype, as_genotype

    spec = network_spec(name, num_classes)
    size = _input_size(spec, input_size)
    geno = Genotype.standard(spec.name) if genotype is None else as_genotype(genotype, spec.name)
    per_block = []
    for slot, block in zip(spec.slots(size), geno.blocks):
        params, macs = block_cost(block, slot)
        per_block.append(BlockCost(slot.index, slot.stage, block.name, slot.c_in, slot.c_out,
                                   slot.stride, params, macs))
    fixed_params, fixed_macs = fixed_cost(spec, size)
    return NetworkCost(spec.name, geno.text, size, spec.num_classes,
                       fixed_params + sum(b.params for b in per_block),
                       fixed_macs + sum(b.macs for b in per_block),
                       fixed_params, fixed_macs, tuple(per_block))


def _input_size(spec: NetworkSpec, input_size: int | None) -> int:
    if input_size is None:
        return spec.input_size
    if not isinstance(input_size, int) or input_size < 8:
        raise BlockSwapError(f"input size must be an integer >= 8 pixels, got {input_size!r}")
    return input_size


class CostTable:
    """Params and MACs of every candidate type at every block position of one network.

    ``params[i, j]`` / ``macs[i, j]`` is the cost of candidate j at block i; ``valid[i, j]``
    is False where candidate j cannot split the channels at block i (its cost is then 0 and
    it must not be sampled there).
    """

    def __init__(self, spec: NetworkSpec, candidates: Sequence[BlockType], input_size: int | None = None):
        self.spec = spec
        self.candidates = list(candidates)
        self.input_size = _input_size(spec, input_size)
        slots = spec.slots(self.input_size)
        shape = (len(slots), len(self.candidates))
        self.params = np.zeros(shape, dtype=np.int64)
        self.macs = np.zeros(shape, dtype=np.int64)
        self.valid = np.zeros(shape, dtype=bool)
        for i, slot in enumerate(slots):
            for j, block in enumerate(self.candidates):
                if block.problem(slot.c_in, slot.c_out) is None:
                    self.valid[i, j] = True
                    self.params[i, j], self.macs[i, j] = block_cost(block, slot)
        empty = np.flatnonzero(~self.valid.any(axis=1))
        if empty.size:
            raise BlockSwapError(
                f"no candidate block type fits block {int(empty[0])} of {spec.name} "
                f"({slots[int(empty[0])].c_in}->{slots[int(empty[0])].c_out} channels); "
                f"candidates: {choices(b.name for b in self.candidates)}")
        self.fixed_params, self.fixed_macs = fixed_cost(spec, self.input_size)

    def metric(self, name: str) -> np.ndarray:
        return {"params": self.params, "macs": self.macs}[name]

    def totals(self, choice: np.ndarray, metric: str = "params") -> np.ndarray:
        """Total cost of genotypes given as candidate indices, shape (n, blocks) -> (n,)."""
        table = self.metric(metric)
        fixed = self.fixed_params if metric == "params" else self.fixed_macs
        rows = np.arange(table.shape[0])
        return table[rows[None, :], choice].sum(axis=1) + fixed

    def range(self, metric: str = "params") -> tuple[int, int]:
        """Smallest and largest total reachable with this candidate set."""
        table = self.metric(metric)
        fixed = self.fixed_params if metric == "params" else self.fixed_macs
        big = np.iinfo(np.int64).max
        low = np.where(self.valid, table, big).min(axis=1).sum() + fixed
        high = np.where(self.valid, table, -1).max(axis=1).sum() + fixed
        return int(low), int(high)


# --------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------

METRICS = ("params", "macs")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_NUMBER = re.compile(r"^(?P<num>[0-9]*\.?[0-9]+(?:e[0-9]+)?)(?P<suffix>[kmg]?)$")


@dataclass(frozen=True)
class Budget:
    """A cost target with a relative window: accept cost within target * (1 +- tolerance).

    The authors used a window of +-2.5% around the parameter budget (SPEC, Search).
    """

    metric: str = "params"  # "params" or "macs"
    target: float = 800_000
    tolerance: float = 0.025

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise BlockSwapError(f"unknown budget metric {self.metric!r}; valid metrics: {choices(METRICS)}")
        if not self.target > 0:
            raise BlockSwapError(f"budget target must be positive, got {self.target!r}")
        if not 0 < self.tolerance < 1:
            raise BlockSwapError(f"budget tolerance must be between 0 and 1 (e.g. 0.025), got {self.tolerance!r}")

    @property
    def lower(self) -> float:
        return self.target * (1 - self.tolerance)

    @property
    def upper(self) -> float:
        return self.target * (1 + self.tolerance)

    def contains(self, value):
        return (value >= self.lower) & (value <= self.upper)

    def __str__(self) -> str:
        return f"{self.metric}={format_count(self.target)} +-{self.tolerance:.1%}"


def parse_count(text: str) -> float:
    """'800k' -> 800000, '1.6M' -> 1600000, '90m' -> 90000000, '2243546' -> 2243546."""
    match = _NUMBER.match(str(text).strip().lower().replace("_", "").replace(",", ""))
    if not match:
        raise BlockSwapError(f"bad count {text!r}: expected a number with an optional k/M/G suffix, e.g. 800k")
    return float(match["num"]) * _SUFFIX[match["suffix"]]


def parse_budget(text: str, tolerance: float = 0.025) -> Budget:
    """Parse ``800k`` (parameters), ``params=800k`` or ``macs=90M``."""
    text = str(text).strip()
    metric, _, value = text.rpartition("=")
    metric = metric.strip().lower() or "params"
    if metric not in METRICS:
        raise BlockSwapError(f"unknown budget metric {metric!r} in {text!r}; valid metrics: {choices(METRICS)}")
    return Budget(metric, parse_count(value), tolerance)


def format_count(n: float) -> str:
    """811400 -> '811.4K', 132500000 -> '132.5M', 3669000000 -> '3.669G' (the paper's style)."""
    for div, suffix, digits in ((10**9, "G", 3), (10**6, "M", 1), (10**3, "K", 1)):
        if abs(n) >= div:
            return f"{n / div:.{digits}f}{suffix}"
    return f"{n:.0f}"
