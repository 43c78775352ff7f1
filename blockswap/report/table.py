"""Aligned plain-text tables for the terminal."""

from __future__ import annotations

from typing import Sequence


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
