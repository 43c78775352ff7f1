"""BlockSwap (paper Sec. 4.3): the best Fisher potential among the first n samples of one search
per budget, trained as a student for each n; one search per candidate set compared."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import BlockSwapError
from ...proxies.ranking import parse_rank_by
from ...space.blocks import parse_candidates
from ..runs import Run, search_key, search_run
from ..values import positive_all
from .base import METHODS, Method, MethodSpec, per_budget, search_samples


@dataclass(frozen=True)
class BlockSwapOptions:
    samples: tuple[int, ...] | None = None  # the n of "best of n"; None: the [search] section's count only
    # candidate sets compared, one search each (e.g. ["paper", "paper+structured"]); None: [search]'s
    candidates: tuple[str, ...] | None = None
    # What picks the student from the search's samples: the paper's Fisher potential first; any
    # other signal or aggregate ("macs", "mean_rank(fisher,macs,snip)") adds students picked by it
    # from the same samples, at the largest n only (the comparison, not Sec. 4.3's curve).
    rank_by: tuple[str, ...] = ("fisher",)

    def __post_init__(self) -> None:
        positive_all(self.samples, "samples")
        for c in self.candidates or ():
            parse_candidates(c)  # fails early on a bad set or block name
        if not self.rank_by:
            raise BlockSwapError("rank_by needs one or more signals, e.g. ['fisher', 'macs']")
        names = tuple(parse_rank_by(r).name for r in self.rank_by)  # fails early on a bad name
        if len(set(names)) != len(names):
            raise BlockSwapError(f"rank_by names a signal twice: {list(self.rank_by)}")
        object.__setattr__(self, "rank_by", names)

    @property
    def signals(self) -> list[str]:
        """Every signal the search computes: the first ranks it, then the others' components."""
        out: list[str] = []
        for r in self.rank_by:
            out += [s.name for s in parse_rank_by(r).components if s.name not in out]
        return out


def series(candidates: str | None) -> str:
    """'blockswap' for the experiment's candidates, 'blockswap-paper+structured' for a named set."""
    return "blockswap" if candidates is None else "blockswap-" + candidates.replace(",", "_").replace("(", "").replace(")", "")


def _samples(spec, m: MethodSpec) -> tuple[int, ...]:
    return m.options.samples or (search_samples(spec),)


def _searches(spec, m: MethodSpec) -> list[Run]:
    seed = int(spec.search.get("seed", 0))
    return [search_run(series(c), b, seed, samples=max(_samples(spec, m)), signals=m.options.signals, candidates=c)
            for b in spec.budgets for c in m.options.candidates or (None,)]


def _students(spec, m: MethodSpec, seed: int, budget, where: str) -> list[Run]:
    first, *others = m.options.rank_by
    picks = [(first, n) for n in _samples(spec, m)] + [(r, max(_samples(spec, m))) for r in others]
    return [Run(f"student/{series(c)}-{n}{_suffix(r)}/{where}", "student", m.name, budget.text, seed,
                {"search": search_key(series(c), budget), "best_of": n, "candidates": c,
                 **({"rank_by": r} if r != "fisher" else {})})
            for c in m.options.candidates or (None,) for r, n in picks]


def _suffix(rank_by: str) -> str:
    """'' for the paper's Fisher, '-by-macs', '-by-mean_rank-fisher_macs' for others: folder-safe."""
    if rank_by == "fisher":
        return ""
    return "-by-" + rank_by.replace("(", "-").replace(")", "").replace(",", "_").replace("@", "at")


def _pick(search, detail) -> int:
    """Paper Sec. 4.3: the best-ranked of the first n samples (by Fisher, or by `rank_by`)."""
    rank_by = detail.get("rank_by")
    if rank_by is None:
        order = search.ranked("full")
    else:
        order = parse_rank_by(rank_by).order({i: s["signals"] for i, s in search.scores("full").items()})
    first = [i for i in order if i < detail["best_of"]]
    if not first:
        raise BlockSwapError(f"no scored candidate among the first {detail['best_of']} of its search")
    return first[0]


def _label(detail) -> str:
    cands = f" {detail['candidates']}" if detail.get("candidates") else ""
    by = f", by {_short(detail['rank_by'])}" if detail.get("rank_by") else ""
    return f"BlockSwap{cands} (best of {detail['best_of']}{by})"


def _short(rank_by: str) -> str:
    """'mean_rank(fisher,macs,snip)' -> 'mean rank of 3 signals'; a signal: its name."""
    r = parse_rank_by(rank_by)
    return rank_by if len(r.components) == 1 else f"mean rank of {len(r.components)} signals"


def _series(detail) -> str:
    """The line of error-vs-cost figures: one per candidate set and picking signal."""
    name = f"BlockSwap, {detail['candidates']} blocks" if detail.get("candidates") else "BlockSwap"
    return f"{name}, by {_short(detail['rank_by'])}" if detail.get("rank_by") else name


METHODS.add("blockswap", Method(
    "blockswap", per_budget(_students), _label, rank=0, options=BlockSwapOptions, searches=_searches,
    pick=_pick, order=lambda d: (bool(d.get("rank_by")), -d["best_of"]), series=_series,
    summary="the best Fisher potential of the first n samples of one search (the best of another signal where "
            "the label says \"by\")", title="BlockSwap"))
