"""Exact costs of a genotype without building it: parameters and MACs (paper Sec. 4, step 1).

A conv with c_in, c_out, kernel k and g groups has c_in*c_out*k*k/g weights and as many
multiply-accumulates per output pixel; a network's cost is the sum over its blocks (each
`block_layers`) plus the stem and head. Units:

* params: learnable scalars, BN affine weight and bias included, running statistics excluded
  (what ``sum(p.numel() for p in model.parameters())`` reports);
* macs: conv + linear multiply-accumulates for ONE input image (half of what
  ``torch.utils.flop_counter.FlopCounterMode`` reports as FLOPs).

`CostTable` precomputes every (block position, candidate type) pair once so that rejection
sampling costs a genotype by numpy indexing and a sum, without walking any block's layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..errors import BlockSwapError, choices
from .blocks import BlockType, parse_block
from .complexity import Complexity, Conv, Norm, Plan
from .genotype import as_genotype
from .latency import LatencyTable
from .networks import BlockSlot, NetworkSpec, network_spec


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


def block_layers(block: "BlockType | str", c_in: int, c_out: int, stride: int) -> tuple[Plan, Plan, Plan]:
    """The layers of a whole pre-activation block: (pre-activation, body, shortcut).

    The shortcut is empty (identity) when the shape is kept (WRN convention), else a strided
    1x1 conv without BN on the pre-activated input.
    """
    block = parse_block(block)
    pre: Plan = (("bn", Norm(c_in)),)
    shortcut: Plan = () if c_in == c_out and stride == 1 else (("shortcut", Conv(c_in, c_out, 1, stride)),)
    return pre, block.layers(c_in, c_out, stride), shortcut


def block_complexity(block: "BlockType | str", c_in: int, c_out: int, stride: int,
                     cx: Complexity) -> Complexity:
    """Analytic cost of a whole block on top of `cx` (whose h, w is the block's input size)."""
    pre, body, shortcut = block_layers(block, c_in, c_out, stride)
    out = cx.walk(pre).walk(body)
    params, macs = Complexity(cx.h, cx.w).walk(shortcut).added(Complexity(cx.h, cx.w))
    return Complexity(out.h, out.w, out.params + params, out.macs + macs)


def block_cost(block: "BlockType | str", slot: BlockSlot) -> tuple[int, int]:
    """(params, macs) of one block of type `block` at position `slot`."""
    start = Complexity(slot.h, slot.w)
    return block_complexity(block, slot.c_in, slot.c_out, slot.stride, start).added(start)


def fixed_cost(spec: NetworkSpec, input_size: int | None = None) -> tuple[int, int]:
    """(params, macs) of everything but the swappable blocks: stem, final BN, classifier."""
    stem = spec.stem_complexity(input_size)
    head = spec.head_complexity()
    return stem.params + head.params, stem.macs + head.macs


def network_cost(name: "str | NetworkSpec", genotype=None, input_size: int | None = None,
                 num_classes: int | None = None) -> NetworkCost:
    """Parameters and MACs of network `name` with `genotype` (None: all standard blocks).

    `input_size` is the square input side (default 32 for WRNs, 224 for ResNets); it changes
    MACs, not parameters.

    >>> network_cost("wrn-40-2").params
    2243546
    """
    spec = network_spec(name, num_classes)
    size = check_input_size(spec, input_size)
    geno = as_genotype(genotype, spec)
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


def check_input_size(spec: NetworkSpec, input_size: int | None) -> int:
    if input_size is None:
        return spec.input_size
    if not isinstance(input_size, int) or input_size < 8:
        raise BlockSwapError(f"input size must be an integer >= 8 pixels, got {input_size!r}")
    return input_size


class CostTable:
    """Params and MACs (and, given a latency table, seconds) of every candidate type at every
    block position of one network.

    ``params[i, j]`` / ``macs[i, j]`` / ``latency[i, j]`` is the cost of candidate j at block i;
    ``valid[i, j]`` is False where candidate j cannot split the channels at block i (its cost
    is then 0 and it must not be sampled there).
    """

    def __init__(self, spec: NetworkSpec, candidates: Sequence[BlockType], input_size: int | None = None,
                 latency: "LatencyTable | None" = None):
        self.spec = spec
        self.candidates = list(candidates)
        self.input_size = check_input_size(spec, input_size)
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
        self.tables: dict[str, np.ndarray] = {"params": self.params, "macs": self.macs}
        self.fixed: dict[str, float] = {"params": self.fixed_params, "macs": self.fixed_macs}
        if latency is not None:
            if (latency.network, latency.input_size) != (spec.name, self.input_size):
                raise BlockSwapError(f"the latency table is for {latency.network} at {latency.input_size}px, "
                                     f"not {spec.name} at {self.input_size}px")
            self.latency = np.zeros(shape, dtype=np.float64)
            for i, j in zip(*np.nonzero(self.valid)):
                self.latency[i, j] = latency.block_seconds(int(i), self.candidates[j].name)
            self.tables["latency"] = self.latency
            self.fixed["latency"] = latency.fixed + latency.offset  # seconds

    def metric(self, name: str) -> np.ndarray:
        if name not in self.tables:
            hint = "; give a latency table (--latency-table)" if name == "latency" else ""
            raise BlockSwapError(f"no {name} costs in this table{hint}; it has {choices(self.tables)}")
        return self.tables[name]

    def totals(self, choice: np.ndarray, metric: str = "params") -> np.ndarray:
        """Total cost of genotypes given as candidate indices, shape (n, blocks) -> (n,)."""
        table = self.metric(metric)
        rows = np.arange(table.shape[0])
        return table[rows[None, :], choice].sum(axis=1) + self.fixed[metric]

    def range(self, metric: str = "params") -> tuple[float, float]:
        """Smallest and largest total reachable with this candidate set (ints for counts)."""
        table = self.metric(metric)
        low = np.where(self.valid, table, np.inf).min(axis=1).sum() + self.fixed[metric]
        high = np.where(self.valid, table, -np.inf).max(axis=1).sum() + self.fixed[metric]
        return (float(low), float(high)) if metric == "latency" else (int(low), int(high))
