"""The report of an experiment (`blockswap report experiment`): the paper's evidence, ours beside
theirs. Reads the experiment's store only; writes ``report.md``, ``report.html``, ``summary.json``
and the PNG figures into one folder.

The sections are the registered studies (`studies.STUDIES`) by their `order`, each added when it
applies to the finished students: the comparison at each budget (Table 2, Figure 3, Appendix C),
single vs random mixed blocktypes (Figure 2, Sec. 4.1), ranking signals against final error
(Table 1, Sec. 4.2), samples needed (Sec. 4.3), good and bad networks (Sec. 4.4), block
sensitivity (Appendix B, Figure 4) and pictures of the chosen networks (Appendix D).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import BlockSwapError
from ..experiments.paper import paper_results
from ..experiments.spec import ExperimentSpec
from ..experiments.store import open_experiment
from ..files import atomic_write_json, atomic_write_text
from .document import write_html, write_markdown
from .studies import Context, in_order, label
from .studies.base import budget_text

__all__ = ["experiment_report", "label"]


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
    paper = paper_results(spec.paper) if spec.paper else None
    ctx = Context(done, spec, paper, out)
    sections = [study.section(ctx) for study in in_order() if study.applies(done)]
    teachers = [r for r in rows if r["phase"] == "teacher" and r["status"] == "done"]
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["status"]] += 1
    intro = [f"Experiment `{spec.name}` ({spec.source}): {spec.description}",
             f"Teacher network {spec.model}" + (f" ({spec.teacher_model})" if spec.teacher_model else "")
             + f" on `{spec.data}`" + (f" at {spec.input_size}x{spec.input_size} pixels" if spec.input_size else "")
             + f"; students trained {spec.student.epochs} epochs"
             + (f" on a fixed {spec.student.train_images:,} of the training images" if spec.student.train_images else "")
             + f" ({spec.student.recipe} recipe)"
             + (f" with attention transfer (beta {spec.student.beta:g})" if spec.distill else " without distillation")
             + f"; budgets {', '.join(budget_text(b) for b in spec.budgets)}.",
             f"Runs: {counts['done']} done, {counts['failed']} failed, {counts['pending'] + counts['running']} "
             "not finished. Errors are top-1 errors in percent on the data's evaluation split (" + _evaluated_on(spec.data)
             + "), mean +- sample standard deviation over seeds (n = runs)."
             + (" Teachers: " + ", ".join(f"seed {t['seed']} {t['result']['top1_error']:.2f}%" for t in teachers)
                if teachers else "")]
    if paper:
        intro.append(f"Paper numbers: {paper['source']}. {paper.get('missing', '')}".strip())
    title = f"BlockSwap experiment report: {spec.name}"
    intro.append("Every finished run, with its genotype, costs, seed, signals and final error, is in `runs.csv` "
                 "beside this report: each table here can be recomputed from it.")
    write_markdown(title, intro, sections, out / "report.md")
    write_html(title, intro, sections, out, out / "report.html")
    summary = {"experiment": raw_spec, "sections": [s.title for s in sections],
               "tables": {s.title: [t.__dict__ for t in s.tables] for s in sections}}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "runs.csv", runs_csv(rows))
    return {"out": str(out), "report": str(out / "report.md"), "html": str(out / "report.html"),
            "csv": str(out / "runs.csv"),
            "sections": [s.title for s in sections], "runs": dict(counts)}


def _evaluated_on(data: str) -> str:
    """Which images the errors are of, in words."""
    from ..data.spec import parse_data

    spec = parse_data(data)
    if spec.holdout:
        return f"{spec.holdout:,} training images carved out by a fixed seed, not the test set"
    return "its validation split" if spec.entry is None else spec.entry.val_images


RUN_COLUMNS = ("key", "phase", "method", "label", "budget", "seed", "model", "genotype", "candidate", "params",
               "macs", "nonzero_params", "nonzero_macs", "epochs_done", "top1_error", "top5_error", "seconds")


def runs_csv(rows: list[dict[str, Any]]) -> str:
    """Every finished teacher and student, one line each: `RUN_COLUMNS`, then every signal
    measured on its network at initialisation (empty where not measured)."""
    done = [r for r in rows if r["status"] == "done" and r["phase"] in ("teacher", "student")]
    signals: list[str] = []
    for r in done:
        signals += [s for s in (r["result"] or {}).get("signals", {}) if s not in signals]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*RUN_COLUMNS, *signals])
    for r in done:
        result = r["result"] or {}
        values = {"key": r["key"], "phase": r["phase"], "method": r["method"], "seed": r["seed"],
                  "budget": r["budget"] or "", "label": label(r) if r["phase"] == "student" else "teacher",
                  "candidate": (r["detail"] or {}).get("candidate", result.get("candidate", "")),
                  "seconds": "" if r["seconds"] is None else f"{r['seconds']:.1f}"}
        line = [values[c] if c in values else result.get(c, "") for c in RUN_COLUMNS]
        line = ["" if v is None else v for v in line]
        writer.writerow(line + [_number(result.get("signals", {}).get(s)) for s in signals])
    return buf.getvalue()


def _number(value) -> str:
    return "" if value is None else repr(float(value))
