"""Reduced networks: smaller networks of the teacher's family (e.g. WRN-16-1 for a WRN-40-2
teacher; paper Table 2, 3), trained as students; each sits at the budget nearest its size."""

from __future__ import annotations

from dataclasses import dataclass

from ...space.networks import network_spec
from ..runs import Run
from .base import METHODS, Method, MethodSpec


@dataclass(frozen=True)
class ReducedOptions:
    models: tuple[str, ...]  # e.g. ["wrn-16-1", "wrn-16-2", "wrn-40-1"]

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(network_spec(str(m)).name for m in self.models))


def _students(spec, m: MethodSpec, seed: int) -> list[Run]:
    return [Run(f"student/reduced/{name}/s{seed}", "student", m.name, None, seed, {"model": name})
            for name in m.options.models]


METHODS.add("reduced", Method(
    "reduced", _students, lambda d: d["model"].upper(), rank=3, options=ReducedOptions,
    order=lambda d: (not d["model"].startswith("wrn"),),  # WRN before ResNet, as the paper's tables
    summary="smaller networks of the teacher's family, at the budget nearest their size (within 1.5x of it)"))
