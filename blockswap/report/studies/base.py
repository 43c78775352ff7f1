"""What a report study is: one registered `Study` value (`STUDIES`), placed by its `order`.

A study reads the finished students of an experiment (`Context.done`, rows of its store),
says whether it `applies` to them and writes its `Section` (tables, text, figures in
report/figures.py). Adding a study is one `STUDIES.add` in one new file of this folder
(docs/architecture.md); `experiment_report` adds the section of every study that applies.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...experiments.methods import METHODS, Method
from ...experiments.runs import budget_label
from ...experiments.spec import ExperimentSpec
from ...registry import Registry
from ..document import Section
from ..stats import mean_std  # noqa: F401 (re-exported to the studies: one definition, report.stats)

RANDOM = "random"  # the method whose students are random draws with every signal (Figure 2, Table 1, Sec. 4.4)


@dataclass(frozen=True)
class Context:
    """What every study reads: the finished students, the experiment and the report folder."""

    done: list[dict[str, Any]]  # store rows of finished students (key, method, budget, seed, detail, result)
    spec: ExperimentSpec
    paper: dict[str, Any] | None  # the paper's numbers (experiments/paper.json), if the file names them
    out: Path  # the report folder: figures are written here

    @property
    def budgets(self) -> list:
        return list(self.spec.budgets)


@dataclass(frozen=True)
class Study:
    name: str
    applies: Callable[[list[dict[str, Any]]], bool]  # finished student rows -> whether it has something to show
    section: Callable[[Context], Section]
    order: float = 100  # place in the report, lowest first (the paper's order: 10 comparison ... 70 pictures)


STUDIES: Registry[Study] = Registry("study", "studies")


def in_order() -> list[Study]:
    """The registered studies in the report's order."""
    return sorted(STUDIES.values(), key=lambda s: s.order)


def method_of(row: dict[str, Any]) -> Method:
    return METHODS[row["method"]]


def label(row: dict[str, Any]) -> str:
    """The name of a student's method in tables: 'BlockSwap (best of 1000)', 'single G(4)', ..."""
    return method_of(row).label(row["detail"])


def has(method: str) -> Callable[[list[dict[str, Any]]], bool]:
    """`applies` for a study of one method's students."""
    return lambda rows: any(r["method"] == method for r in rows)


def params(result: dict[str, Any]) -> int:
    """Parameters a student counts against its budget: non-zero ones for pruned students."""
    return int(result.get("nonzero_params") or result["params"])


def err(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" +- {std:.2f}" if std is not None else "") + f" (n={n})"


def budget_text(budget) -> str:
    """'200K params' for a table."""
    return f"{budget_label(budget).upper()} {budget.metric}" if budget.metric == "params" else budget.text


def random_nets(done, budget) -> list[dict[str, Any]]:
    """One entry per random network of `budget`: its final error averaged over its seeds."""
    by_cand: dict[int, list[dict]] = defaultdict(list)
    for r in done:
        if r["method"] == RANDOM and r["budget"] == budget.text:
            by_cand[r["detail"]["candidate"]].append(r["result"])
    return [{"candidate": c, "error": statistics.fmean(x["top1_error"] for x in res), "genotype": res[0]["genotype"],
             "params": res[0]["params"], "signals": res[0].get("signals", {})} for c, res in sorted(by_cand.items())]


def best_of_rows(done) -> list[dict[str, Any]]:
    """Students that are the best-ranked of the first n samples of a search (BlockSwap's)."""
    return [r for r in done if "best_of" in r["detail"]]
