"""BlockSwap (paper Sec. 4.3): the best Fisher potential among the first n samples of one search
per budget, trained as a student for each n; one search per candidate set compared."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import BlockSwapError
from ...space.blocks import parse_candidates
from ..runs import Run, search_key, search_run
from ..values import positive_all
from .base import METHODS, Method, MethodSpec, per_budget, search_samples


@dataclass(frozen=True)
class BlockSwapOptions:
    samples: tuple[int, ...] | None = None  # the n of "best of n"; None: the [search] section's count only
    # candidate sets compared, one search each (e.g. ["paper", "paper+structured"]); None: [search]'s
    candidates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        positive_all(self.samples, "samples")
        for c in self.candidates or ():
            parse_candidates(c)  # fails early on a bad set or block name


def series(candidates: str | None) -> str:
    """'blockswap' for the experiment's candidates, 'blockswap-paper+structured' for a named set."""
    return "blockswap" if candidates is None else "blockswap-" + candidates.replace(",", "_").replace("(", "").replace(")", "")


def _samples(spec, m: MethodSpec) -> tuple[int, ...]:
    return m.options.samples or (search_samples(spec),)


def _searches(spec, m: MethodSpec) -> list[Run]:
    seed = int(spec.search.get("seed", 0))
    return [search_run(series(c), b, seed, samples=max(_samples(spec, m)), signals=["fisher"], candidates=c)
            for b in spec.budgets for c in m.options.candidates or (None,)]


def _students(spec, m: MethodSpec, seed: int, budget, where: str) -> list[Run]:
    return [Run(f"student/{series(c)}-{n}/{where}", "student", m.name, budget.text, seed,
                {"search": search_key(series(c), budget), "best_of": n, "candidates": c})
            for c in m.options.candidates or (None,) for n in _samples(spec, m)]


def _pick(search, detail) -> int:
    """Paper Sec. 4.3: the best-ranked of the first n samples."""
    first = [i for i in search.ranked("full") if i < detail["best_of"]]
    if not first:
        raise BlockSwapError(f"no scored candidate among the first {detail['best_of']} of its search")
    return first[0]


def _label(detail) -> str:
    cands = f" {detail['candidates']}" if detail.get("candidates") else ""
    return f"BlockSwap{cands} (best of {detail['best_of']})"


METHODS.add("blockswap", Method(
    "blockswap", per_budget(_students), _label, rank=0, options=BlockSwapOptions, searches=_searches,
    pick=_pick, order=lambda d: (-d["best_of"],), series=lambda d: f"BlockSwap, {d['candidates']} blocks" if d.get("candidates") else "BlockSwap",
    summary="the best Fisher potential of the first n samples of one search"))
