"""Random mixed-blocktype networks (paper Sec. 4.1, 4.2): uniform draws from the budget window,
every signal measured on each, each draw trained once per seed (Figure 2, Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import BlockSwapError
from ...proxies.registry import parse_signal
from ..runs import Run, budget_label, search_key, search_run
from ..values import positive
from .base import METHODS, Method, MethodSpec, per_budget

# Paper Table 1 and Sec. 4.2: training accuracy, weight L2 norms, gradient norms and Fisher
# potential after k minibatches (weight_l2@k, grad_l1@k); the field's zero-cost proxies (docs/signals.md) and the
# candidate's own parameters and MACs.
DEFAULT_SIGNALS = ("fisher", "fisher@10", "fisher@100", "train_acc@1", "train_acc@10", "train_acc@100",
                   "weight_l2@1", "weight_l2@10", "weight_l2@100", "grad_l1@1", "grad_l1@10", "grad_l1@100",
                   "snip", "grad_norm", "l2_norm", "synflow", "naswot", "jacob_cov", "params", "macs")


@dataclass(frozen=True)
class RandomOptions:
    networks: int = 100  # draws per budget
    signals: tuple[str, ...] = DEFAULT_SIGNALS  # measured on every draw
    # Seed noise (the report's protocol check): with repeat = r > 0, the seeds after the first of
    # the method's `seeds` train only the first r draws, so those r networks have every seed and
    # the rest one; 0: every draw is trained with every seed.
    repeat: int = 0

    def __post_init__(self) -> None:
        positive(self.networks, "networks")
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, int) or not 0 <= self.repeat <= self.networks:
            raise BlockSwapError(f"repeat must be an integer from 0 to networks ({self.networks}), got {self.repeat!r}")
        object.__setattr__(self, "signals", tuple(parse_signal(s).name for s in self.signals))


def _searches(spec, m: MethodSpec) -> list[Run]:
    seed = int(spec.search.get("seed", 0))
    return [search_run("random", b, seed, samples=m.options.networks, signals=list(m.options.signals))
            for b in spec.budgets]


def _students(spec, m: MethodSpec, seed: int, budget, where: str) -> list[Run]:
    o = m.options
    count = o.networks if (o.repeat == 0 or seed == m.seeds[0]) else o.repeat
    return [Run(f"student/random/{budget_label(budget)}/n{i:03d}/s{seed}", "student", m.name, budget.text, seed,
                {"search": search_key("random", budget), "candidate": i}) for i in range(count)]


def _pick(search, detail) -> int:
    i = detail["candidate"]
    if i not in {c.index for c in search.candidates()}:
        raise BlockSwapError(f"its search holds no candidate {i}")
    return i


METHODS.add("random", Method(
    "random", per_budget(_students), lambda d: "random", rank=1, options=RandomOptions, searches=_searches,
    pick=_pick, one_network_per_run=True,
    summary="networks drawn uniformly from the budget window, each trained once"))
