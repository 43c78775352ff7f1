"""Block sensitivity (paper Appendix B, Figure 4): the final error with one block at a time
swapped, against the unswapped network."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ...space.budget import format_count
from ..document import Section, Table
from ..figures import sensitivity_bars
from .base import STUDIES, Context, Study, err, has, mean_std

METHOD = "sensitivity"


def sensitivity(ctx: Context) -> Section:
    by_pos, ref = defaultdict(list), []
    params = {}
    for r in ctx.done:
        if r["method"] != METHOD:
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
    block = ctx.spec.method(METHOD).options.block
    sensitivity_bars(positions, errors, [params[p] for p in positions], Path(ctx.out) / "sensitivity.png",
                     reference_error=reference)
    rows = [[p, format_count(params[p]), err(*mean_std(by_pos[p]), len(by_pos[p]))] for p in positions]
    text = [f"One block at a time swapped for {block}, every other block standard (paper Appendix B, Figure 4)."
            + (f" The unswapped network: {reference:.2f}%." if reference is not None else "")]
    return Section("Block sensitivity (Appendix B)", text,
                   [Table(["position", "params", "top-1 error %"], rows)],
                   [("sensitivity.png", f"Final error and parameters with block i swapped for {block}")])


STUDIES.add("sensitivity", Study("sensitivity", has(METHOD), sensitivity, order=60))
