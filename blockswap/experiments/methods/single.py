"""Single blocktype networks (Moonshine; paper Sec. 4.1, Table 2): every block one type, the
types whose network cost lies nearest the budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import BlockSwapError
from ...space.blocks import BlockType, parse_candidates
from ...space.budget import Budget
from ...space.costs import network_cost
from ...space.genotype import Genotype
from ..runs import Run
from ..values import positive
from .base import METHODS, Method, MethodSpec, per_budget


@dataclass(frozen=True)
class SingleOptions:
    nearest: int = 2  # block types per budget, nearest first

    def __post_init__(self) -> None:
        positive(self.nearest, "nearest")


def nearest_single_types(spec, budget: Budget, k: int) -> list[BlockType]:
    """The `k` candidate block types whose single-blocktype network (every block that type, the
    Moonshine student) costs nearest `budget`, by the ratio of costs (paper Sec. 4.1, Table 2)."""
    candidates = parse_candidates(spec.search.get("candidates"))
    scored = []
    for block in candidates:
        try:
            c = network_cost(spec.model, Genotype.uniform(spec.model, block), spec.input_size)
        except BlockSwapError:  # invalid at some position (e.g. G(32) on 16 channels): no such network
            continue
        cost = c.params if budget.metric == "params" else c.macs
        scored.append((abs(math.log(cost / budget.target)), block.name, block))
    return [b for _, _, b in sorted(scored)[:k]]


def _students(spec, m: MethodSpec, seed: int, budget, where: str) -> list[Run]:
    return [Run(f"student/single-{block.name}/{where}", "student", m.name, budget.text, seed,
                {"genotype": Genotype.uniform(spec.model, block).text, "block": block.name})
            for block in nearest_single_types(spec, budget, m.options.nearest)]


METHODS.add("single", Method(
    "single", per_budget(_students), lambda d: f"single {d['block']}", rank=2, options=SingleOptions,
    summary="every block one type (Moonshine), the types whose network cost lies nearest the budget"))
