"""Figures: matplotlib's Agg backend (headless), written atomically in the suffix's format."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..errors import BlockSwapError, choices


def plot_formats() -> dict[str, str]:
    """The file suffixes matplotlib can write, with their description."""
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def check_plot_path(path: str | Path) -> Path:
    """`path` as a file a figure can be written to, checked before any work: a known suffix,
    not a folder, no file in the way of its folder (a missing folder is created on writing)."""
    path = Path(path).expanduser()
    suffix = path.suffix.lstrip(".").lower()
    if path.is_dir():
        raise BlockSwapError(f"--plot {str(path)!r} is a folder; give a file name such as {str(path / 'plot.png')!r}")
    if suffix not in plot_formats():
        raise BlockSwapError(f"--plot {str(path)!r}: unknown file type {path.suffix or '(no suffix)'!r}; "
                             f"valid suffixes: {choices('.' + s for s in sorted(plot_formats()))}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise BlockSwapError(f"--plot {str(path)!r} is below the file {str(parent)!r}; give a path in a folder")
    return path


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    from ..files import atomic_write_bytes

    path = check_plot_path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".").lower(), dpi=150, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: no display needed
    import matplotlib.pyplot as plt

    return plt
