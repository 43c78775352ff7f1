"""Tables and plots of results: searches (candidates.csv) and training runs (record.json).

`format_table` renders aligned plain-text tables for the terminal. Plots use matplotlib's Agg
backend, so they work on headless machines, and are written atomically as PNG (or any format
matplotlib knows from the file suffix).

* `search_table` / `plot_search`: every scored candidate of a search, its ranking signal
  against its cost, the winner marked (paper Sec. 4: the highest Fisher potential wins).
* `run_groups` / `plot_runs`: trained networks grouped by (role, network, genotype,
  distillation) with mean and standard deviation of the top-1 / top-5 error over seeds, and the
  error against parameters (the paper's Figure 3 and Table 2 layout).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import BlockSwapError


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str],
                 align: str | None = None) -> str:
    """Aligned text table; `align` is one char per column, 'l' or 'r' (default: numbers right)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    if align is None:
        align = "".join(
            "r" if rows and all(isinstance(r[i], (int, float)) or _numeric(str(r[i])) for r in rows) else "l"
            for i in range(len(headers)))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w)
                         for v, w, a in zip(values, widths, align)).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _numeric(text: str) -> bool:
    t = text.replace(",", "").replace("%", "").rstrip("KMG").strip()
    try:
        float(t)
        return True
    except ValueError:
        return False


def _save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    from .files import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".").lower() or "png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: no display needed
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------------------------
# Searches
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchTable:
    """The scored candidates of one search folder."""

    folder: Path
    signal: str  # the ranking signal (e.g. "fisher")
    higher_is_better: bool
    rows: list[dict[str, Any]]  # index, genotype, params, macs, score (None if not scored)

    @property
    def scored(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["score"] is not None]

    def ranked(self) -> list[dict[str, Any]]:
        sign = -1 if self.higher_is_better else 1
        return sorted(self.scored, key=lambda r: (sign * r["score"], r["index"]))


def search_table(folder: str | Path) -> SearchTable:
    """Read ``candidates.csv`` and ``top.json`` of a finished (or interrupted and exported) search."""
    folder = Path(folder)
    csv_path, top_path = folder / "candidates.csv", folder / "top.json"
    if not csv_path.is_file() or not top_path.is_file():
        raise BlockSwapError(f"{str(folder)!r} is not a finished search folder: expected candidates.csv "
                             "and top.json (written by `blockswap search`)")
    try:
        top = json.loads(top_path.read_text())
        signal, higher = top["signal"], bool(top["higher_is_better"])
        reader = csv.DictReader(io.StringIO(csv_path.read_text()))
        rows = []
        for r in reader:
            value = r.get(signal, "")
            rows.append({"index": int(r["index"]), "genotype": r["genotype"], "params": int(r["params"]),
                         "macs": int(r["macs"]), "score": float(value) if value not in ("", None) else None})
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise BlockSwapError(f"cannot read the search in {str(folder)!r}: {exc}") from None
    return SearchTable(folder, signal, higher, rows)


def plot_search(table: SearchTable, path: str | Path, metric: str = "params") -> Path:
    """Scatter of the ranking signal against cost for every scored candidate; winner starred."""
    plt = _pyplot()
    scored = table.scored
    if not scored:
        raise BlockSwapError(f"no scored candidates in {str(table.folder)!r}")
    best = table.ranked()[0]
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax.scatter([r[metric] for r in scored], [r["score"] for r in scored], s=8, alpha=0.5,
               label=f"{len(scored)} candidates")
    ax.scatter([best[metric]], [best["score"]], marker="*", s=200, color="C3", label="winner")
    ax.set_xlabel("parameters" if metric == "params" else "MACs per image")
    ax.set_ylabel(table.signal)
    values = [r["score"] for r in scored]
    # Fisher potentials span orders of magnitude: show them on a log scale when all are positive.
    log = table.signal.startswith("fisher") and min(values) > 0
    if log:
        ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"search {table.folder.name}: {table.signal} vs {metric}")
    if log:
        values = [math.log10(v) for v in values]
    hist.set_xlabel(f"log10 {table.signal}" if log else table.signal)
    hist.hist(values, bins=30)
    hist.set_ylabel("candidates")
    return _save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------


def load_records(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every ``record.json`` in `paths` (run folders, record files, or folders of runs)."""
    from .train import RECORD_FORMAT

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
        if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
            raise BlockSwapError(f"{str(f)!r} is not a BlockSwap run record (format {RECORD_FORMAT})")
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
    plt = _pyplot()
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
    return _save_figure(fig, path)
