"""What ranks a search's candidates: one signal, or an aggregate of several.

``--rank-by`` takes a signal name ("fisher", the paper's; "macs"; "snip"; "fisher@10") or an
aggregate written ``name(signal,signal,...)``. The one aggregate is ``mean_rank``: each
candidate's mean, over the signals, of its rank among the scored candidates (1 = best; ties
share the average of their ranks; a missing or NaN value ranks after every value, the missing
ones sharing the average of the last ranks), as AZ-NAS (Lee & Ham 2024) and VKDNW aggregate
their proxies. The candidate with the lowest mean rank wins; equal means go to the lower key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Union

from ..errors import BlockSwapError
from ..registry import Registry
from .registry import Signal, parse_signal, rank

Values = Mapping[int, Mapping[str, "float | None"]]  # candidate key -> {signal name: value}


def _usable(value: "float | None") -> bool:
    return value is not None and not math.isnan(value)


def average_ranks(scores: Mapping[int, "float | None"], higher_is_better: bool = True) -> dict[int, float]:
    """Rank of every key (1 = best), ties averaged; missing/NaN values share the last ranks."""
    valid = sorted((k for k in scores if _usable(scores[k])),
                   key=lambda k: -scores[k] if higher_is_better else scores[k])
    out: dict[int, float] = {}
    i = 0
    while i < len(valid):
        j = i
        while j + 1 < len(valid) and scores[valid[j + 1]] == scores[valid[i]]:
            j += 1
        for k in valid[i:j + 1]:
            out[k] = (i + j) / 2 + 1  # positions i..j (0-based) share their mean rank
        i = j + 1
    missing = [k for k in scores if not _usable(scores[k])]
    for k in missing:
        out[k] = len(valid) + (len(missing) + 1) / 2
    return out


@dataclass(frozen=True)
class MeanRank:
    """The mean of each candidate's ranks under `signals` (lower is better)."""

    signals: tuple[Signal, ...]

    @property
    def name(self) -> str:
        return f"mean_rank({','.join(s.name for s in self.signals)})"

    higher_is_better = False

    @property
    def components(self) -> tuple[Signal, ...]:
        return self.signals

    def scores(self, values: Values) -> dict[int, float]:
        per_signal = [average_ranks(s.scores(values), s.higher_is_better) for s in self.signals]
        return {i: sum(r[i] for r in per_signal) / len(per_signal) for i in values}

    def order(self, values: Values) -> list[int]:
        return rank(self.scores(values), higher_is_better=False)


RankBy = Union[Signal, MeanRank]
AGGREGATES: Registry[Callable[[tuple[Signal, ...]], MeanRank]] = Registry("signal aggregate")
AGGREGATES.add("mean_rank", MeanRank)
_AGGREGATE = re.compile(r"^(?P<name>[a-z_0-9]+)\((?P<args>[^()]*)\)$")


def parse_rank_by(text: "str | RankBy") -> RankBy:
    """'fisher' -> Signal('fisher'); 'mean_rank(fisher,macs,synflow)' -> MeanRank(...)."""
    if isinstance(text, (Signal, MeanRank)):
        return text
    if not isinstance(text, str):
        raise BlockSwapError(f"rank_by must be a signal name or an aggregate such as mean_rank(fisher,macs), "
                             f"got {type(text).__name__}")
    cleaned = text.strip().lower().replace(" ", "")
    match = _AGGREGATE.match(cleaned)
    if match is None:
        if "(" in cleaned or ")" in cleaned:
            raise BlockSwapError(f"bad rank_by {text!r}: write a signal or name(signal,signal,...), "
                                 "e.g. mean_rank(fisher,macs,synflow)")
        return parse_signal(cleaned)
    make = AGGREGATES.get(match["name"])
    signals = tuple(parse_signal(s) for s in match["args"].split(",") if s)
    if len(signals) < 2 or len(set(signals)) != len(signals):
        raise BlockSwapError(f"rank_by {text!r}: an aggregate takes two or more distinct signals, "
                             "e.g. mean_rank(fisher,macs,synflow)")
    return make(signals)
