"""An experiment expanded into runs: teachers, then searches, then students (the three phases).

Every run has a stable key (its folder below ``OUT/runs/``), so a rerun finds what is done.
Seeds pair as in the paper (Sec. 5): the student of seed s learns from the teacher of seed s.
Students whose genotype comes from a search (blockswap, random) name the search and what to take
from it; the runner resolves them once the search is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import BlockSwapError
from ..space.blocks import BlockType, parse_block, parse_candidates
from ..space.budget import Budget
from ..space.costs import network_cost
from ..space.genotype import Genotype
from ..space.networks import network_spec
from .spec import ExperimentSpec

PHASES = ("teacher", "search", "student")


@dataclass(frozen=True)
class Run:
    """One unit of work. `detail` says what to build; its values are JSON."""

    key: str  # e.g. "student/random/200k/n017/s0": also the run's folder below OUT/runs
    phase: str  # one of PHASES
    method: str  # "teacher", "search" or a student method of `spec.METHODS`
    budget: str | None  # the budget's text ("params=200K"), None for budget-free runs
    seed: int
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def budget_label(budget: Budget) -> str:
    """'200k' for params=200K, 'macs-90m' for macs=90M: a folder-safe name."""
    n = budget.target
    if budget.metric == "latency":
        return f"latency-{n * 1e3:g}ms"
    value = f"{n / 1e9:g}g" if n >= 1e9 else f"{n / 1e6:g}m" if n >= 1e6 else f"{n / 1e3:g}k" if n >= 1e3 else f"{n:g}"
    return value if budget.metric == "params" else f"{budget.metric}-{value}"


def _series(candidates: str | None) -> str:
    """'blockswap' for the experiment's candidates, 'blockswap-paper+structured' for a named set."""
    return "blockswap" if candidates is None else "blockswap-" + candidates.replace(",", "_").replace("(", "").replace(")", "")


def search_key(method: str, budget: Budget) -> str:
    return f"search/{method}/{budget_label(budget)}"


def expand(spec: ExperimentSpec) -> list[Run]:
    """Every run of `spec`, phase by phase, in a stable order."""
    student_seeds = sorted({s for m in spec.methods for s in m.seeds})
    runs = [Run(f"teacher/s{s}", "teacher", "teacher", None, s, {"model": spec.model})
            for s in student_seeds] if (spec.distill or spec.method("l1")) and spec.teacher_model is None else []
    search_seed = int(spec.search.get("seed", 0))
    for budget in spec.budgets:
        if (m := spec.method("blockswap")) is not None:
            samples = m.options["samples"] or [int(spec.search.get("samples", 1000))]
            for cands in m.options["candidates"] or [None]:
                runs.append(Run(search_key(_series(cands), budget), "search", "search", budget.text, search_seed,
                                {"samples": max(samples), "signals": ["fisher"], "candidates": cands}))
        if (m := spec.method("random")) is not None:
            runs.append(Run(search_key("random", budget), "search", "search", budget.text, search_seed,
                            {"samples": m.options["networks"], "signals": m.options["signals"]}))
    for m in spec.methods:
        for seed in m.seeds:
            runs += _students(spec, m.name, m.options, seed)
    return runs


def _students(spec: ExperimentSpec, method: str, options: dict[str, Any], seed: int) -> list[Run]:
    out = []
    if method == "reduced":
        return [Run(f"student/reduced/{name}/s{seed}", "student", method, None, seed, {"model": name})
                for name in options["models"]]
    if method == "sensitivity":
        net = network_spec(spec.model)  # resolved once for every position
        n = net.num_blocks
        out.append(Run(f"student/sensitivity/standard/s{seed}", "student", method, None, seed,
                       {"position": None, "genotype": Genotype.standard(net).text}))
        for p in range(n):
            names = ["S"] * n
            names[p] = options["block"]
            out.append(Run(f"student/sensitivity/p{p:02d}/s{seed}", "student", method, None, seed,
                           {"position": p, "genotype": Genotype(net, tuple(map(parse_block, names))).text}))
        return out
    for budget in spec.budgets:
        where = f"{budget_label(budget)}/s{seed}"
        if method == "blockswap":
            for cands in options["candidates"] or [None]:
                for n in options["samples"] or [int(spec.search.get("samples", 1000))]:
                    out.append(Run(f"student/{_series(cands)}-{n}/{where}", "student", method, budget.text, seed,
                                   {"search": search_key(_series(cands), budget), "best_of": n, "candidates": cands}))
        elif method == "random":
            for i in range(options["networks"]):
                out.append(Run(f"student/random/{budget_label(budget)}/n{i:03d}/s{seed}", "student", method,
                               budget.text, seed, {"search": search_key("random", budget), "candidate": i}))
        elif method == "single":
            for block in nearest_single_types(spec, budget, options["nearest"]):
                out.append(Run(f"student/single-{block.name}/{where}", "student", method, budget.text, seed,
                               {"genotype": Genotype.uniform(spec.model, block).text, "block": block.name}))
        elif method in ("l1", "snip"):
            out.append(Run(f"student/{method}/{where}", "student", method, budget.text, seed,
                           {"prune": method, "prune_params": int(budget.target)}))
    return out


def nearest_single_types(spec: ExperimentSpec, budget: Budget, k: int) -> list[BlockType]:
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
