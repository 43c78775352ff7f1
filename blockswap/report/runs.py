"""Trained networks grouped by setting (runs that differ only in their seed), with the mean and
standard deviation of their top-1 / top-5 error over seeds, and error against parameters (the
layout of the paper's Table 2 and Figure 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..errors import BlockSwapError
from ..space.budget import format_count
from ..train.checkpoint import RUN_RECORD
from ..train.config import RUNTIME_FIELDS
from .plots import pyplot, save_figure
from .stats import mean_std


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


def _setting(record: dict[str, Any]) -> dict[str, Any]:
    """Everything that shapes a run's result except its seed: runs with equal settings are
    repeats of one experiment, and only those are averaged."""
    # `amp` is a request; the precision a run computed in is what shapes its result.
    config = {k: v for k, v in record.get("config", {}).items()
              if k not in ("seed", "recipe", "amp") and k not in RUNTIME_FIELDS}
    mixed = record.get("mixed_precision")  # records before "precision": "torch.bfloat16" or None
    precision = record.get("precision") or ("float32" if mixed is None else str(mixed).removeprefix("torch."))
    return {"role": record.get("role"), "model": record.get("model"), "data": record.get("data"),
            "teacher": record.get("teacher"), "genotype": record.get("genotype"), "precision": precision, **config}


def _flat(setting: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`setting` with nested dicts spread into dotted keys (``model.prune_params``), so that a
    difference names the one field that differs, not a whole JSON object."""
    flat: dict[str, Any] = {}
    for k, v in setting.items():
        if isinstance(v, dict) and v:
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v
    return flat


def _differences(settings: list[dict[str, Any]]) -> list[str]:
    """The (dotted) setting keys whose values are not the same in all of `settings`; a teacher
    that differs by source is named by its source alone (its fingerprint differs with it)."""
    flats = [_flat(s) for s in settings]
    keys = sorted({k for f in flats for k in f})
    differs = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    if "teacher.source" in differs or "teacher" in differs:
        differs = [k for k in differs if not k.startswith("teacher.") or k == "teacher.source"]
    return differs


def _show(key: str, value: Any, width: int = 24) -> str:
    """``key=value`` short enough for a table cell: counts as 175.1K, long text cut."""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        text = format_count(value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"{key}={text}"


def _structure(record: dict[str, Any]) -> str:
    """The network's blocks as a person reads them: the genotype (or 'all S'), and for a pruned
    student how it was pruned and to how many non-zero parameters (paper Appendix C)."""
    text = record.get("genotype") or "all S"
    model = record.get("model") or {}
    if model.get("prune"):
        budget = model.get("prune_params")
        text += f", {model['prune']}-pruned" + (f" to {format_count(budget)}" if budget else "")
    return text


def run_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records grouped by their whole setting (all but the seed), with error mean/std over seeds.

    Groups that share method, network, genotype and data but differ in another setting (epochs,
    learning rate, teacher, ...) stay apart, and each names what sets it apart (``setting``); a
    seed repeated within a group (the same run twice) counts once, and is listed in ``repeats``.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(records, key=lambda r: r.get("_path", "")):
        groups.setdefault(json.dumps(_setting(rec), sort_keys=True), []).append(rec)
    label = {key: (method(recs[0]), recs[0].get("model", {}).get("name", "?"),
                   _structure(recs[0]), recs[0].get("data", "?"))
             for key, recs in groups.items()}
    out = []
    for key, recs in groups.items():
        siblings = [json.loads(k) for k in groups if label[k] == label[key]]
        differs = _differences(siblings)
        setting = _flat(json.loads(key))
        by_seed: dict[Any, dict[str, Any]] = {}
        repeats = []
        for r in recs:
            seed = r.get("seeds", {}).get("run")
            if seed in by_seed:
                repeats.append(r.get("_path", "?"))
            else:
                by_seed[seed] = r
        runs = [r for r in by_seed.values() if r.get("top1_error") is not None]
        if not runs:
            continue
        top1 = [r["top1_error"] for r in runs]
        top5 = [r["top5_error"] for r in runs if r.get("top5_error") is not None]
        m1, s1 = mean_std(top1)
        m5, s5 = mean_std(top5) if len(top5) == len(top1) else (None, None)
        how, name, genotype, data = label[key]
        out.append({"method": how, "network": name, "genotype": genotype, "data": data,
                    "setting": ", ".join(_show(k, setting.get(k)) for k in differs),
                    "params": runs[0].get("params"), "nonzero_params": runs[0].get("nonzero_params"),
                    "macs": runs[0].get("macs"), "runs": len(runs),
                    "seeds": sorted(r.get("seeds", {}).get("run") for r in runs), "repeats": repeats,
                    "top1_error": m1, "top1_std": s1, "top5_error": m5, "top5_std": s5})
    return sorted(out, key=lambda g: (g["data"], -(g["params"] or 0), g["method"], g["setting"]))


def plot_runs(groups: list[dict[str, Any]], path: str | Path) -> Path:
    """Top-1 error against parameters, one marker per group with its std as error bar."""
    plt = pyplot()
    if not groups:
        raise BlockSwapError("no finished runs to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = sorted({g["method"] for g in groups})
    for i, how in enumerate(methods):
        gs = [g for g in groups if g["method"] == how]
        label = how if not any(g["setting"] for g in gs) else how + " (settings differ: see table)"
        ax.errorbar([g["params"] for g in gs], [g["top1_error"] for g in gs],
                    yerr=[g["top1_std"] or 0.0 for g in gs], fmt="o", capsize=3, color=f"C{i}", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("top-1 error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("error vs parameters (mean +- std over seeds)")
    return save_figure(fig, path)
