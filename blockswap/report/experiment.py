"""The report of an experiment (`blockswap report experiment`): the paper's evidence, ours beside
theirs. Reads the experiment's store only; writes ``report.md``, ``report.html``, ``summary.json``
and the PNG figures into one folder.

Sections follow the paper: the comparison at each budget (Table 2, Figure 3, Appendix C), single
vs random mixed blocktypes (Figure 2, Sec. 4.1), ranking signals against final error (Table 1,
Sec. 4.2), samples needed (Sec. 4.3), good and bad networks (Sec. 4.4), block sensitivity
(Appendix B, Figure 4) and pictures of the chosen networks (Appendix D).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import BlockSwapError
from ..experiments.grid import budget_label
from ..experiments.paper import paper_results
from ..experiments.spec import ExperimentSpec
from ..experiments.store import open_experiment
from ..files import atomic_write_json
from ..space.budget import format_count
from ..space.costs import network_cost
from .document import Section, Table, write_html, write_markdown
from .figures import block_frequencies, error_densities, error_vs_cost, genotype_picture, sensitivity_bars
from .stats import best_of_first, correlation, mean_std

LABELS = {"l1": "L1 pruning", "snip": "SNIP", "random": "random"}


def label(row: dict[str, Any]) -> str:
    """The name of a student's method in tables: 'BlockSwap (best of 1000)', 'single G(4)', ..."""
    m, d = row["method"], row["detail"]
    if m == "blockswap":
        series = f" {d['candidates']}" if d.get("candidates") else ""
        return f"BlockSwap{series} (best of {d['best_of']})"
    if m == "single":
        return f"single {d['block']}"
    if m == "reduced":
        return d["model"].upper()
    return LABELS.get(m, m)


def _params(result: dict[str, Any]) -> int:
    """Parameters a student counts against its budget: non-zero ones for pruned students."""
    return int(result.get("nonzero_params") or result["params"])


_mean_std = mean_std  # one definition (report.stats)


def _err(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" +- {std:.2f}" if std is not None else "") + f" (n={n})"


def experiment_report(results: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the report of the experiment in `results` (its folder or store) to folder `out`."""
    with open_experiment(results) as store:
        raw_spec, rows = store.spec(), store.rows()
    if raw_spec is None:
        raise BlockSwapError(f"{str(results)!r} holds no experiment")
    spec = ExperimentSpec.from_dict(raw_spec)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if r["status"] == "done" and r["phase"] == "student"]
    budgets = list(spec.budgets)
    paper = paper_results(spec.paper) if spec.paper else None
    sections = [_comparison(done, budgets, spec, paper, out)]
    if any(r["method"] == "random" for r in done):
        sections += [_densities(done, budgets, out), _signals(done, budgets, paper)]
    if any(r["method"] == "blockswap" for r in done):
        sections.append(_samples(done, budgets))
    if any(r["method"] == "random" for r in done):
        sections.append(_good_bad(done, budgets, out))
    if any(r["method"] == "sensitivity" for r in done):
        sections.append(_sensitivity(done, spec, out))
    if any(r["method"] == "blockswap" for r in done):
        sections.append(_pictures(done, budgets, spec, out))
    teachers = [r for r in rows if r["phase"] == "teacher" and r["status"] == "done"]
    counts = defaultdict(int)
    for r in rows:
        counts[r["status"]] += 1
    intro = [f"Experiment `{spec.name}` ({spec.source}): {spec.description}",
             f"Teacher network {spec.model}" + (f" ({spec.teacher_model})" if spec.teacher_model else "")
             + f" on `{spec.data}`" + (f" at {spec.input_size}x{spec.input_size} pixels" if spec.input_size else "")
             + f"; students trained {spec.student.epochs} epochs ({spec.student.recipe} recipe)"
             + (f" with attention transfer (beta {spec.student.beta:g})" if spec.distill else " without distillation")
             + f"; budgets {', '.join(_b(b) for b in budgets)}.",
             f"Runs: {counts['done']} done, {counts['failed']} failed, {counts['pending'] + counts['running']} "
             "not finished. Errors are top-1 validation errors in percent, mean +- sample standard deviation "
             "over seeds (n = runs)."
             + (" Teachers: " + ", ".join(f"seed {t['seed']} {t['result']['top1_error']:.2f}%" for t in teachers)
                if teachers else "")]
    if paper:
        intro.append(f"Paper numbers: {paper['source']}. {paper.get('missing', '')}".strip())
    title = f"BlockSwap experiment report: {spec.name}"
    write_markdown(title, intro, sections, out / "report.md")
    write_html(title, intro, sections, out, out / "report.html")
    summary = {"experiment": raw_spec, "sections": [s.title for s in sections],
               "tables": {s.title: [t.__dict__ for t in s.tables] for s in sections}}
    atomic_write_json(out / "summary.json", summary)
    return {"out": str(out), "report": str(out / "report.md"), "html": str(out / "report.html"),
            "sections": [s.title for s in sections], "runs": dict(counts)}


# ---- Table 2 / Figure 3 / Appendix C ----------------------------------------------------------
def _nearest_budget(params: int, budgets) -> str:
    return min(budgets, key=lambda b: abs(math.log(params / b.target))).text


def _comparison(done, budgets, spec, paper, out: Path) -> Section:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    points = []
    for r in done:
        if r["method"] == "sensitivity":
            continue
        res = r["result"]
        budget = r["budget"] or _nearest_budget(_params(res), budgets)
        groups[(budget, label(r))].append(r)
        if r["method"] == "random":
            points.append({"method": "random", "cost_params": _params(res), "cost_macs": res["macs"],
                           "error": res["top1_error"], "error_std": None})
    tables, summary = [], []
    for b in budgets:
        rows = []
        for (budget, name), members in sorted(groups.items(), key=lambda kv: _order(kv[0][1])):
            if budget != b.text:
                continue
            errs = [m["result"]["top1_error"] for m in members]
            mean, std = _mean_std(errs)
            params = statistics.fmean(_params(m["result"]) for m in members)
            macs = statistics.fmean(m["result"].get("nonzero_macs") or m["result"]["macs"] for m in members)
            method = members[0]["method"]
            extra = f"; best {min(errs):.2f}, worst {max(errs):.2f}" if method == "random" else ""
            rows.append([name, format_count(params), format_count(macs), _err(mean, std, len(errs)) + extra,
                         *(_paper_cell(paper, method, b) if paper else [])])
            summary.append({"budget": b.text, "method": name, "error": mean, "error_std": std, "n": len(errs)})
            if method != "random":
                series = members[0]["detail"].get("candidates")
                points.append({"method": name if method in ("single", "reduced") else
                               (f"blockswap {series or ''}".strip() if method == "blockswap" else LABELS.get(method, method)),
                               "cost_params": params, "cost_macs": macs, "error": mean, "error_std": std})
        headers = ["method", "params (non-zero)", "MACs", "top-1 error %"]
        if paper:
            headers.append(f"paper ({paper['dataset']}, {paper['model']}): params, error %")
        tables.append(Table(headers, rows, caption=f"Budget {_b(b)} (+-{b.tolerance:.1%})"))
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
                           "with each method's Pareto front (paper Figure 3); random networks one point each"))
    text = ["Students at each budget (paper Table 2 and Appendix C). BlockSwap: the best Fisher potential of "
            "the first n samples of one search; random: networks drawn uniformly from the budget window, each "
            "trained once; single: every block one type (Moonshine), the types whose network cost lies nearest "
            "the budget; reduced networks sit at the budget nearest their size; L1 and SNIP: unstructured "
            "pruning of the teacher to the budget in non-zero parameters (their MACs are the dense network's "
            "unless non-zero MACs were measured)."]
    if paper and not paper_rows:
        text.append(f"The paper's numbers are on {paper['dataset']} with {paper['model']}: shown for reference "
                    "in the tables, not on the plots (another data set, another scale of error).")
    return Section("Students at each budget (Table 2, Figure 3, Appendix C)", text, tables, images)


def _order(name: str) -> tuple[int, int, str]:
    """Methods in the paper's order; BlockSwap students by their number of samples, most first."""
    for i, prefix in enumerate(("BlockSwap", "random", "single", "WRN", "RESNET", "L1", "SNIP")):
        if name.startswith(prefix):
            n = int(name.rsplit(" ", 1)[-1].rstrip(")")) if prefix == "BlockSwap" else 0
            return i, -n, name
    return 9, 0, name


def _b(budget) -> str:
    """'200K params' for a table."""
    return f"{budget_label(budget).upper()} {budget.metric}" if budget.metric == "params" else budget.text


def _paper_cell(paper, method: str, budget) -> list[str]:
    rows = [p for p in paper["errors"] if p["method"] == method and p["error"] is not None]
    if not rows:
        return ["-"]
    p = min(rows, key=lambda p: abs(math.log(p["params"] / budget.target)))
    if abs(math.log(p["params"] / budget.target)) > math.log(1.15):
        return ["-"]
    return [f"{format_count(p['params'])}: {p['error']:.2f} +- {p['error_std']:.2f}"]


# ---- Figure 2, Table 1, Sec. 4.3, Sec. 4.4 ----------------------------------------------------
def _random_nets(done, budget) -> list[dict[str, Any]]:
    """One entry per random network of `budget`: its final error averaged over its seeds."""
    by_cand: dict[int, list[dict]] = defaultdict(list)
    for r in done:
        if r["method"] == "random" and r["budget"] == budget.text:
            by_cand[r["detail"]["candidate"]].append(r["result"])
    return [{"candidate": c, "error": statistics.fmean(x["top1_error"] for x in res), "genotype": res[0]["genotype"],
             "params": res[0]["params"], "signals": res[0].get("signals", {})} for c, res in sorted(by_cand.items())]


def _densities(done, budgets, out: Path) -> Section:
    random_errors, lines = {}, {}
    for b in budgets:
        nets = _random_nets(done, b)
        if not nets:
            continue
        random_errors[budget_label(b)] = [n["error"] for n in nets]
        ref = defaultdict(list)
        for r in done:
            if r["budget"] == b.text and r["method"] in ("single", "blockswap"):
                ref[label(r)].append(r["result"]["top1_error"])
        lines[budget_label(b)] = {k: statistics.fmean(v) for k, v in ref.items()}
    error_densities(random_errors, lines, out / "densities.png")
    rows = []
    for key, errs in random_errors.items():
        mean, std = _mean_std(errs)
        for name, e in sorted(lines[key].items()):
            below = sum(x < e for x in errs)
            rows.append([key, name, f"{e:.2f}", f"{mean:.2f} +- {std or 0:.2f}", f"{below} of {len(errs)}"])
    return Section("Single vs random mixed blocktypes (Figure 2)",
                   ["Final errors of the random mixed-blocktype networks (densities) against the single-blocktype "
                    "and BlockSwap students of the same budget (dotted lines). The last column counts random networks "
                    "that beat each line."],
                   [Table(["budget", "student", "error %", "random networks: mean +- std %", "random below it"], rows)],
                   [("densities.png", "Final error of random mixed-blocktype networks per budget (paper Figure 2)")])


def _signals(done, budgets, paper) -> Section:
    tables, text = [], []
    for b in budgets:
        nets = _random_nets(done, b)
        if len(nets) < 3:
            continue
        errors = [n["error"] for n in nets]
        names = list(nets[0]["signals"]) + ["params"]
        theirs = (paper or {}).get("correlations", {}).get("budgets", {}).get(budget_label(b), {})
        rows = []
        for name in names:
            values = [n["params"] if name == "params" else n["signals"].get(name) for n in nets]
            k = correlation(values, errors, "kendall")
            s = correlation(values, errors, "spearman")
            rows.append([name, _corr(k), _corr(s), k.n, f"{theirs[name]:+.3f}" if name in theirs else "-"])
        tables.append(Table(["signal", "Kendall tau [95% CI]", "Spearman rho [95% CI]", "networks",
                             "paper (Table 1)"], rows, caption=f"Budget {_b(b)}: {len(nets)} random networks"))
    text.append("How well each signal, measured at initialisation (or after k minibatches of SGD, `@k`), predicts the "
                "final error of the random networks (paper Table 1). Signs are kept: a good signal for "
                "'higher is better' is negatively correlated with error. Intervals: percentile bootstrap over "
                "networks (2000 resamples).")
    if paper and "correlations" in paper:
        text.append(f"Paper column: {paper['correlations']['statistic']}; on {paper['dataset']}.")
    return Section("Ranking signals against final error (Table 1)", text, tables)


def _corr(c) -> str:
    if c.n < 3 or math.isnan(c.value):
        return "-"
    return f"{c.value:+.3f} [{c.low:+.2f}, {c.high:+.2f}]"


def _samples(done, budgets) -> Section:
    rows = []
    for b in budgets:
        by_n = defaultdict(list)
        for r in done:
            if r["method"] == "blockswap" and r["budget"] == b.text:
                by_n[(r["detail"].get("candidates") or "", r["detail"]["best_of"])].append(r["result"]["top1_error"])
        nets = _random_nets(done, b)
        ranked = [n for n in nets if n["signals"].get("fisher") is not None]
        best = best_of_first([n["signals"]["fisher"] for n in ranked], [n["error"] for n in ranked],
                             [n for n in (5, 10, 20, 40, 100) if n <= len(ranked)]) if ranked else {}
        for series, n in sorted(by_n):
            rows.append([_b(b), n, _err(*_mean_std(by_n[series, n]), len(by_n[series, n])),
                         f"trained BlockSwap student{' (candidates ' + series + ')' if series else ''}"])
        for n, e in sorted(best.items()):
            rows.append([_b(b), n, f"{e:.2f}", "best Fisher of the first n trained random networks"])
    return Section("Samples needed (Sec. 4.3)",
                   ["The final error of the best-ranked network (highest Fisher potential) among the first n "
                    "samples. The paper's own figures for this study are not in the text we hold."],
                   [Table(["budget", "samples n", "top-1 error %", "from"], rows)])


def _family(block: str) -> str:
    return block.split("(")[0]


def _good_bad(done, budgets, out: Path) -> Section:
    text, freqs = [], {}
    for b in budgets:
        nets = _random_nets(done, b)
        if len(nets) < 4:
            continue
        errs = [n["error"] for n in nets]
        mean, std = statistics.fmean(errs), statistics.stdev(errs)
        good = [n for n in nets if n["error"] < mean - 2 * std]
        bad = [n for n in nets if n["error"] > mean + 2 * std]
        rule = "more than two standard deviations from the mean (the paper's rule)"
        if len(good) < 2 or len(bad) < 2:
            ordered = sorted(nets, key=lambda n: n["error"])
            q = max(1, len(nets) // 4)
            good, bad, rule = ordered[:q], ordered[-q:], ("the best and worst quarter (fewer than two networks lie "
                                                          "two standard deviations from the mean)")
        text.append(f"Budget {_b(b)}: good and bad are {rule}: {len(good)} and {len(bad)} of {len(nets)} networks.")
        for name, group in (("good", good), ("bad", bad)):
            per_pos: dict[int, dict[str, float]] = {}
            for n in group:
                for pos, block in enumerate(_split(n["genotype"])):
                    per_pos.setdefault(pos, defaultdict(float))[_family(block)] += 1 / len(group)
            freqs[f"{budget_label(b)} {name}"] = {p: dict(v) for p, v in per_pos.items()}
    if not text:
        text.append("Too few random networks per budget (fewer than 4) to tell good from bad ones.")
    images = []
    if freqs:
        block_frequencies(freqs, out / "block_frequencies.png")
        images.append(("block_frequencies.png", "Block family frequency per position among good and bad random "
                                                "networks (paper Sec. 4.4)"))
    return Section("What good and bad networks look like (Sec. 4.4)", text, [], images)


def _split(genotype: str) -> list[str]:
    from ..space.blocks import split_types

    return split_types(genotype, "genotype")


# ---- Appendix B and D -----------------------------------------------------------------------
def _sensitivity(done, spec, out: Path) -> Section:
    by_pos, ref = defaultdict(list), []
    params = {}
    for r in done:
        if r["method"] != "sensitivity":
            continue
        p = r["detail"]["position"]
        if p is None:
            ref.append(r["result"]["top1_error"])
        else:
            by_pos[p].append(r["result"]["top1_error"])
            params[p] = r["result"]["params"]
    positions = sorted(by_pos)
    errors = [statistics.fmean(by_pos[p]) for p in positions]
    reference = statistics.fmean(ref) if ref else None
    block = spec.method("sensitivity").options["block"]
    sensitivity_bars(positions, errors, [params[p] for p in positions], out / "sensitivity.png", reference_error=reference)
    rows = [[p, format_count(params[p]), _err(*_mean_std(by_pos[p]), len(by_pos[p]))] for p in positions]
    text = [f"One block at a time swapped for {block}, every other block standard (paper Appendix B, Figure 4)."
            + (f" The unswapped network: {reference:.2f}%." if reference is not None else "")]
    return Section("Block sensitivity (Appendix B)", text,
                   [Table(["position", "params", "top-1 error %"], rows)],
                   [("sensitivity.png", f"Final error and parameters with block i swapped for {block}")])


def _pictures(done, budgets, spec, out: Path) -> Section:
    images, rows = [], []
    for b in budgets:
        for series in sorted({r["detail"].get("candidates") or "" for r in done if r["method"] == "blockswap"}):
            best = [r for r in done if r["method"] == "blockswap" and r["budget"] == b.text
                    and (r["detail"].get("candidates") or "") == series]
            if best:
                _picture(best, b, series, spec, out, images, rows)
    return Section("The chosen networks (Appendix D)", [],
                   [Table(["budget", "genotype", "params", "MACs"], rows)], images)


def _picture(best, b, series: str, spec, out: Path, images: list, rows: list) -> None:
    top = max(r["detail"]["best_of"] for r in best)
    r = next(r for r in best if r["detail"]["best_of"] == top)
    geno = r["result"]["genotype"]
    cost = network_cost(spec.model, geno, spec.input_size)
    name = f"genotype_{budget_label(b)}{'_' + series.replace('+', '_') if series else ''}.png"
    genotype_picture([str(c.block) for c in cost.per_block], [c.params for c in cost.per_block], out / name,
                     title=f"BlockSwap {_b(b)}: {format_count(cost.params)} params, {format_count(cost.macs)} MACs",
                     stage_of=[c.stage for c in cost.per_block])
    images.append((name, f"The BlockSwap student at {_b(b)} (best of {top}{', candidates ' + series if series else ''}); "
                         "blocks coloured by family, height by parameters"))
    rows.append([_b(b) + (f" ({series})" if series else ""), f"`{geno}`", format_count(cost.params),
                 format_count(cost.macs)])
