"""The one progress bar of every command (tqdm on stderr).

On a terminal it redraws as usual. When stderr is a file or a pipe (a CI log, `nohup`, a
cluster job) it writes at most one plain line every 30 seconds, so a long search or training
run does not flood its log with redraws.
"""

from __future__ import annotations

import sys
from typing import Any


def progress(total: int | None, desc: str, unit: str, *, enabled: bool = True, initial: int = 0,
             leave: bool = True) -> Any:
    """A tqdm bar for `total` steps of `unit` (disabled: a no-op bar with the same methods)."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=leave,
                file=sys.stderr, dynamic_ncols=tty, ascii=not tty,
                mininterval=0.1 if tty else 30.0, maxinterval=10.0 if tty else 60.0)
