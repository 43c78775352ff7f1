"""Trained networks grouped by (method, network, genotype, data), with the mean and standard
deviation of their top-1 / top-5 error over seeds, and error against parameters (the layout of
the paper's Table 2 and Figure 3)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

from ..errors import BlockSwapError
from ..train.checkpoint import RUN_RECORD
from .plots import pyplot, save_figure


def load_records(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every ``record.json`` in `paths` (run folders, record files, or folders of runs)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(p.rglob("record.json"))
        else:
            raise BlockSwapError(f"{str(p)!r} does not exist")
    records = []
    for f in files:
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BlockSwapError(f"cannot read run record {str(f)!r}: {exc}") from None
        RUN_RECORD.check(rec, repr(str(f)))
        rec["_path"] = str(f)
        records.append(rec)
    if not records:
        raise BlockSwapError(f"no record.json found in {', '.join(map(str, paths))}")
    return records


def method(record: dict[str, Any]) -> str:
    """How a network was trained: 'teacher', 'student (AT beta=1000)', 'student (no distillation)'."""
    if record.get("role") != "student":
        return str(record.get("role", "?"))
    cfg = record.get("config", {})
    if record.get("teacher") is None:
        return "student (no distillation)"
    parts = []
    if cfg.get("beta", 0) > 0:
        parts.append(f"AT beta={cfg['beta']:g}")
    if cfg.get("kd_weight", 0) > 0:
        parts.append(f"KD w={cfg['kd_weight']:g} T={cfg.get('kd_temperature', 0):g}")
    return f"student ({', '.join(parts) or 'teacher unused'})"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records grouped by (method, network, genotype), with error mean/std over their seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        model = rec.get("model", {})
        key = (method(rec), model.get("name", "?"), rec.get("genotype") or "all S", rec.get("data", "?"))
        groups.setdefault(key, []).append(rec)
    out = []
    for (how, name, genotype, data), recs in groups.items():
        top1 = [r["top1_error"] for r in recs if r.get("top1_error") is not None]
        top5 = [r["top5_error"] for r in recs if r.get("top5_error") is not None]
        if not top1:
            continue
        m1, s1 = _mean_std(top1)
        m5, s5 = _mean_std(top5) if top5 else (math.nan, math.nan)
        out.append({"method": how, "network": name, "genotype": genotype, "data": data,
                    "params": recs[0].get("params"), "macs": recs[0].get("macs"), "runs": len(top1),
                    "seeds": sorted(r.get("seeds", {}).get("run") for r in recs),
                    "top1_error": m1, "top1_std": s1, "top5_error": m5, "top5_std": s5})
    return sorted(out, key=lambda g: (g["data"], -(g["params"] or 0), g["method"]))


def plot_runs(groups: list[dict[str, Any]], path: str | Path) -> Path:
    """Top-1 error against parameters, one marker per group with its std as error bar."""
    plt = pyplot()
    if not groups:
        raise BlockSwapError("no finished runs to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = sorted({g["method"] for g in groups})
    for i, how in enumerate(methods):
        gs = [g for g in groups if g["method"] == how]
        ax.errorbar([g["params"] for g in gs], [g["top1_error"] for g in gs],
                    yerr=[g["top1_std"] for g in gs], fmt="o", capsize=3, color=f"C{i}", label=how)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("top-1 error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("error vs parameters (mean +- std over seeds)")
    return save_figure(fig, path)
