"""Students at each budget (paper Table 2, Figure 3, Appendix C): every method's students, mean
and spread over seeds, beside the paper's numbers, and error against cost with Pareto fronts."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from ...space.budget import format_count
from ..document import Section, Table
from ..figures import error_vs_cost
from .base import STUDIES, Context, Study, budget_text, err, label, mean_std, method_of, params


NEAREST = 1.5  # a budget-free student (a reduced network) sits at a budget within this factor of its size


def _nearest_budget(n: int, budgets) -> str | None:
    """The budget nearest `n` parameters, None if every budget is more than `NEAREST` times away
    (a report of some budgets only: the network belongs to another)."""
    b = min(budgets, key=lambda b: abs(math.log(n / b.target)))
    return b.text if abs(math.log(n / b.target)) <= math.log(NEAREST) else None


def _sort_key(row) -> tuple:
    """Methods in the paper's order (`Method.rank`), then each method's own (`Method.order`)."""
    m = method_of(row)
    return m.rank, m.order(row["detail"]), label(row)


def _paper_cell(paper, method: str, budget) -> list[str]:
    rows = [p for p in paper["errors"] if p["method"] == method and p["error"] is not None]
    if not rows:
        return ["-"]
    p = min(rows, key=lambda p: abs(math.log(p["params"] / budget.target)))
    if abs(math.log(p["params"] / budget.target)) > math.log(1.15):
        return ["-"]
    return [f"{format_count(p['params'])}: {p['error']:.2f} +- {p['error_std']:.2f}"]


def _images(cfg) -> str:
    return f"{cfg.train_images:,} images" if cfg.train_images else "all training images"


def _training(spec, method) -> str:
    """What a student's weights saw: its own epochs, and the teacher's where it starts from them."""
    own = f"{spec.student.epochs} ep x {_images(spec.student)}"
    if method.from_teacher_weights:
        return f"teacher's {spec.teacher.epochs} ep x {_images(spec.teacher)}, then {own}"
    return own


def comparison(ctx: Context) -> Section:
    done, budgets, spec, paper, out = ctx.done, ctx.budgets, ctx.spec, ctx.paper, Path(ctx.out)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    points = []
    for r in done:
        method = method_of(r)
        if not method.in_comparison:
            continue
        res = r["result"]
        budget = r["budget"] or _nearest_budget(params(res), budgets)
        if budget is None:
            continue
        groups[(budget, label(r))].append(r)
        if method.one_network_per_run:
            points.append({"method": label(r), "cost_params": params(res), "cost_macs": res["macs"],
                           "error": res["top1_error"], "error_std": None})
    tables = []
    ordered = sorted(groups.items(), key=lambda kv: _sort_key(kv[1][0]))
    for b in budgets:
        rows = []
        for (budget, name), members in ordered:
            if budget != b.text:
                continue
            errs = [m["result"]["top1_error"] for m in members]
            mean, std = mean_std(errs)
            n_params = statistics.fmean(params(m["result"]) for m in members)
            macs = statistics.fmean(m["result"].get("nonzero_macs") or m["result"]["macs"] for m in members)
            method = method_of(members[0])
            extra = f"; best {min(errs):.2f}, worst {max(errs):.2f}" if method.one_network_per_run else ""
            rows.append([name, _training(spec, method), format_count(n_params), format_count(macs), err(mean, std, len(errs)) + extra,
                         *(_paper_cell(paper, method.name, b) if paper else [])])
            if not method.one_network_per_run:
                series = method.series(members[0]["detail"]) if method.series else name
                points.append({"method": series, "cost_params": n_params, "cost_macs": macs, "error": mean,
                               "error_std": std})
        headers = ["method", "training", "params (non-zero)", "MACs", "top-1 error %"]
        if paper:
            headers.append(f"paper ({paper['dataset']}, {paper['model']}): params, error %")
        tables.append(Table(headers, rows, caption=f"Budget {budget_text(b)} (+-{b.tolerance:.1%})"))
    images = []
    paper_rows = None
    if paper and spec.data.split(":")[0] == paper["dataset"]:
        paper_rows = [{"method": p["method"], "cost_params": p["params"], "cost_macs": p["macs"] or math.nan,
                       "error": p["error"], "error_std": p["error_std"]} for p in paper["errors"] if p["error"] is not None]
    points = [p for p in points if p["error"] is not None]
    if points:
        for cost in ("params", "macs"):
            error_vs_cost(points, out / f"error_vs_{cost}.png", cost=cost, paper_rows=paper_rows,
                          title=f"{spec.name}: error against {cost}")
            images.append((f"error_vs_{cost}.png", f"Top-1 error against {'non-zero parameters' if cost == 'params' else 'MACs'} "
                           "with each method's Pareto front (paper Figure 3)"
                           + ("; random networks one point each" if any(p["method"] == "random" for p in points) else "")))
    # Only the methods this report has: each as its registry summary (a reader must not look for
    # random networks in a report without them).
    present = sorted({method_of(r) for r in done if method_of(r).in_comparison}, key=lambda m: m.rank)
    text = ["Students at each budget (paper Table 2 and Appendix C). "
            + "; ".join(f"{m.title or m.name}: {m.summary}" for m in present) + "."]
    if spec.distill:
        whose = "the teacher of its seed" if spec.teacher_seed is None else f"one teacher (seed {spec.teacher_seed})"
        text.append(f"Every student learns by attention transfer (beta {spec.student.beta:g}) from {whose}, "
                    f"trained {spec.teacher.epochs} epochs on {_images(spec.teacher)}; 'training' is what the "
                    "student's own weights saw (L1 pruning starts from the trained teacher's).")
    if paper and not paper_rows:
        text.append(f"The paper's numbers are on {paper['dataset']} with {paper['model']}: shown for reference "
                    "in the tables, not on the plots (another data set, another scale of error).")
    return Section("Students at each budget (Table 2, Figure 3, Appendix C)", text, tables, images)


STUDIES.add("comparison", Study("comparison", lambda rows: True, comparison, order=10))
