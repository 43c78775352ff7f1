"""The one progress bar of every command (tqdm on stderr).

On a terminal it redraws as usual. When stderr is a file or a pipe (a CI log, `nohup`, a
cluster job) it writes at most one plain, newline-ended line every 30 seconds (the first
after 30 seconds: a short step leaves no progress lines at all), so a long search or
training run does not flood its log with redraws. Callers move the bar only through tqdm's
`update` (never `refresh`, which draws at once) and `set_postfix(..., refresh=False)`, so
this throttle holds for every command.
"""

from __future__ import annotations

import sys
from typing import Any

LOG_INTERVAL = 30.0  # seconds between progress lines in a log (stderr not a terminal)


class _LogLines:
    """A file for tqdm that turns its carriage-return redraws into whole lines.

    tqdm redraws with ``"\\r" + bar`` and clears with ``"\\r" + spaces``: in a log the first
    would pile up as one endless line, the second as blank lines."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(total: int | None, desc: str, unit: str, *, enabled: bool = True, initial: int = 0,
             leave: bool = True) -> Any:
    """A tqdm bar for `total` steps of `unit` (disabled: a no-op bar with the same methods)."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    if tty:
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=leave,
                    file=sys.stderr, dynamic_ncols=True, mininterval=0.1, maxinterval=10.0)
    # miniters=1 with a 30-s mininterval: time alone decides when a line is written.
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=leave,
                file=_LogLines(sys.stderr), ascii=True, ncols=100, mininterval=LOG_INTERVAL,
                maxinterval=2 * LOG_INTERVAL, miniters=1, delay=LOG_INTERVAL)
