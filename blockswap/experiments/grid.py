"""An experiment expanded into runs: teachers, then searches, then students (the three phases).

Every run has a stable key (its folder below ``OUT/runs/``), so a rerun finds what is done.
Seeds pair as in the paper (Sec. 5): the student of seed s learns from the teacher of seed s
(or every student from the one teacher of ``teacher_seed``).
Each method (`methods.METHODS`) adds its own searches and students; students whose genotype
comes from a search name it in their detail, and the runner resolves them once it is done.
"""

from __future__ import annotations

from .methods import METHODS, nearest_single_types
from .runs import PHASES, Run, budget_label, search_key
from .spec import ExperimentSpec

__all__ = ["PHASES", "Run", "budget_label", "expand", "nearest_single_types", "search_key", "teacher_key"]


def teacher_key(seed: int) -> str:
    return f"teacher/s{seed}"


def needs_teachers(spec: ExperimentSpec) -> bool:
    """Teachers are trained by the experiment when students learn from them (and none is given)
    or a method starts from their weights."""
    if spec.teacher_model is not None:
        return False
    return spec.distill or any(METHODS[m.name].from_teacher_weights for m in spec.methods)


def expand(spec: ExperimentSpec) -> list[Run]:
    """Every run of `spec`, phase by phase, in a stable order."""
    teacher_seeds = sorted({spec.teacher_of(s) for m in spec.methods for s in m.seeds})
    runs = [Run(teacher_key(s), "teacher", "teacher", None, s, {"model": spec.model})
            for s in teacher_seeds] if needs_teachers(spec) else []
    searches: dict[str, Run] = {}
    for m in spec.methods:
        for r in METHODS[m.name].searches(spec, m):
            searches.setdefault(r.key, r)  # two methods reading one search share it
    order = [b.text for b in spec.budgets]
    runs += sorted(searches.values(), key=lambda r: order.index(r.budget))  # budget by budget, stable
    for m in spec.methods:
        for seed in m.seeds:
            runs += METHODS[m.name].students(spec, m, seed)
    return runs
