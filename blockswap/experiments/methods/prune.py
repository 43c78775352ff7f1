"""Unstructured pruning of the teacher to a budget in non-zero parameters (paper Table 2):
``l1`` (magnitude pruning of the trained teacher, then fine-tuned as a student) and ``snip``
(SNIP at initialisation, then trained). One method, parameterised by the pruning criterion."""

from __future__ import annotations

from ..runs import Run
from .base import METHODS, Method, MethodSpec, per_budget


def prune_method(criterion: str, label: str, rank: int, from_teacher_weights: bool) -> Method:
    def students(spec, m: MethodSpec, seed: int, budget, where: str) -> list[Run]:
        return [Run(f"student/{m.name}/{where}", "student", m.name, budget.text, seed,
                    {"prune": criterion, "prune_params": int(budget.target)})]

    return Method(criterion, per_budget(students), lambda d: label, rank=rank, from_teacher_weights=from_teacher_weights,
                  summary=f"unstructured {label} of the teacher to the budget in non-zero parameters (their MACs "
                          "are the dense network's unless non-zero MACs were measured)",
                  title=criterion.upper())


METHODS.add("l1", prune_method("l1", "L1 pruning", 5, from_teacher_weights=True))
METHODS.add("snip", prune_method("snip", "SNIP", 6, from_teacher_weights=False))
