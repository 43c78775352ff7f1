"""The chosen networks (paper Appendix D): a picture of each budget's BlockSwap student (the
best of the most samples), blocks coloured by family, height by parameters."""

from __future__ import annotations

from pathlib import Path

from ...experiments.runs import budget_label
from ...space.budget import format_count
from ...space.costs import network_cost
from ..document import Section, Table
from ..figures import genotype_picture
from .base import STUDIES, Context, Study, best_of_rows, budget_text


def pictures(ctx: Context) -> Section:
    images, rows = [], []
    chosen = best_of_rows(ctx.done)
    for b in ctx.budgets:
        for series in sorted({r["detail"].get("candidates") or "" for r in chosen}):
            best = [r for r in chosen if r["budget"] == b.text and (r["detail"].get("candidates") or "") == series]
            if best:
                _picture(best, b, series, ctx, images, rows)
    return Section("The chosen networks (Appendix D)", [],
                   [Table(["budget", "genotype", "params", "MACs"], rows)], images)


def _picture(best, b, series: str, ctx: Context, images: list, rows: list) -> None:
    top = max(r["detail"]["best_of"] for r in best)
    r = next(r for r in best if r["detail"]["best_of"] == top)
    geno = r["result"]["genotype"]
    cost = network_cost(ctx.spec.model, geno, ctx.spec.input_size)
    name = f"genotype_{budget_label(b)}{'_' + series.replace('+', '_') if series else ''}.png"
    genotype_picture([str(c.block) for c in cost.per_block], [c.params for c in cost.per_block], Path(ctx.out) / name,
                     title=f"BlockSwap {budget_text(b)}: {format_count(cost.params)} params, {format_count(cost.macs)} MACs",
                     stage_of=[c.stage for c in cost.per_block])
    images.append((name, f"The BlockSwap student at {budget_text(b)} (best of {top}{', candidates ' + series if series else ''}); "
                         "blocks coloured by family, height by parameters"))
    rows.append([budget_text(b) + (f" ({series})" if series else ""), f"`{geno}`", format_count(cost.params),
                 format_count(cost.macs)])


STUDIES.add("pictures", Study("pictures", lambda rows: bool(best_of_rows(rows)), pictures, order=70))
