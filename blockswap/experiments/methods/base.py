"""What an experiment method is: one registered `Method` value (`METHODS`).

A method is the student side of one baseline of the comparison (paper Sec. 4, 5, Appendix B, C):
its options (a frozen dataclass, parsed from the ``[methods.NAME]`` table with every value
type-checked), what it needs, the search runs and student runs it adds to the grid, how a student
takes its genotype from a search, and its label and place in the report's tables, as data.
Adding a method is one `METHODS.add` in one new file of this folder (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import BlockSwapError
from ...registry import Registry
from ..runs import Run, budget_label
from ..values import as_dict, parse_fields, typed


@dataclass(frozen=True)
class NoOptions:
    """A method without options (besides ``seeds``)."""


@dataclass(frozen=True)
class MethodSpec:
    """One method of an experiment file: its name, its parsed options and its seeds."""

    name: str
    seeds: tuple[int, ...]
    options: Any = field(default_factory=NoOptions)  # the method's options dataclass

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), **as_dict(self.options)}


def _no_searches(spec: Any, m: MethodSpec) -> list[Run]:
    return []


@dataclass(frozen=True)
class Method:
    """One method. The callables take the `ExperimentSpec` (``spec``) and this method's
    `MethodSpec` (``m``); `pick`, `label` and `order` take a student run's ``detail``."""

    name: str
    students: Callable[[Any, MethodSpec, int], list[Run]]  # (spec, m, seed) -> that seed's students
    label: Callable[[dict[str, Any]], str]  # detail -> "BlockSwap (best of 100)": rows of one label are averaged
    rank: int  # place in the report's tables (paper Table 2 order: BlockSwap first)
    options: type = NoOptions
    searches: Callable[[Any, MethodSpec], list[Run]] = _no_searches  # (spec, m) -> its searches, every budget
    # (search store, detail) -> the candidate index a student trains (its detail names the "search")
    pick: Callable[[Any, dict[str, Any]], int] | None = None
    order: Callable[[dict[str, Any]], tuple] = lambda detail: ()  # within the rank: e.g. most samples first
    series: Callable[[dict[str, Any]], str] | None = None  # the line in error-vs-cost figures (None: label)
    summary: str = ""  # one line: what the method's students are
    title: str = ""  # its name in prose ("BlockSwap", "L1"); "" = `name`
    # A teacher of `model` trained by the experiment even without distillation (`teacher_model`
    # cannot stand in), whose trained weights each student starts from (l1 prunes them).
    from_teacher_weights: bool = False
    in_comparison: bool = True  # a row of the per-budget tables (sensitivity studies positions instead)
    one_network_per_run: bool = False  # runs of one label are different networks (random draws): spread shown

    def parse(self, raw: Any, default_seeds: tuple[int, ...], where: str) -> MethodSpec:
        here = f"{where} [methods.{self.name}]"
        if not isinstance(raw, dict):
            raise BlockSwapError(f"{here} must be a table, got {raw!r}")
        options = parse_fields(self.options, raw, here, ignore=("seeds",))
        seeds = seeds_of(raw["seeds"], "seeds", here) if "seeds" in raw else default_seeds
        return MethodSpec(self.name, seeds, options)


METHODS: Registry[Method] = Registry("method")


def seeds_of(value: Any, key: str, where: str) -> tuple[int, ...]:
    seeds = typed(value, tuple[int, ...], key, where)
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise BlockSwapError(f"{where}: {key!r} must be distinct non-negative integers, got {value!r}")
    return seeds


def search_samples(spec: Any) -> int:
    """The [search] section's sample count (paper Sec. 4.3: 1000)."""
    return int(spec.search.get("samples", 1000))


def per_budget(make: Callable[..., list[Run]]) -> Callable[[Any, MethodSpec, int], list[Run]]:
    """`students` from ``make(spec, m, seed, budget, "200k/s0")`` for each budget of the experiment (the usual shape)."""
    def students(spec: Any, m: MethodSpec, seed: int) -> list[Run]:
        return [r for b in spec.budgets for r in make(spec, m, seed, b, f"{budget_label(b)}/s{seed}")]

    return students
