"""Block sensitivity (paper Appendix B, Figure 4): one block at a time swapped for one type,
every other block standard, and the unswapped network."""

from __future__ import annotations

from dataclasses import dataclass

from ...space.blocks import parse_block
from ...space.genotype import Genotype
from ...space.networks import network_spec
from ..runs import Run
from .base import METHODS, Method, MethodSpec


@dataclass(frozen=True)
class SensitivityOptions:
    block: str = "G(4)"  # paper Appendix B: G(4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "block", parse_block(self.block).name)


def _students(spec, m: MethodSpec, seed: int) -> list[Run]:
    n = network_spec(spec.model).num_blocks
    out = [Run(f"student/sensitivity/standard/s{seed}", "student", m.name, None, seed,
               {"position": None, "genotype": Genotype.standard(spec.model).text})]
    for p in range(n):
        names = ["S"] * n
        names[p] = m.options.block
        out.append(Run(f"student/sensitivity/p{p:02d}/s{seed}", "student", m.name, None, seed,
                       {"position": p, "genotype": Genotype(spec.model, tuple(map(parse_block, names))).text}))
    return out


METHODS.add("sensitivity", Method(
    "sensitivity", _students, lambda d: "sensitivity", rank=7, options=SensitivityOptions, in_comparison=False,
    summary="one block at a time swapped for one type (Appendix B)"))
