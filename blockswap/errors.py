"""The one exception type users see.

Every check on user input raises `BlockSwapError` with a one-line message that names the bad
value and the valid choices. It subclasses `ValueError` so that library users can catch it the
way they catch torchvision's loud `ValueError`s; the CLI prints its message and exits non-zero
instead of showing a stack trace.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from pathlib import Path


class BlockSwapError(ValueError):
    """Bad input to BlockSwap: a wrong name, file, genotype, budget or setting."""


def choices(values: Iterable[object], limit: int = 40) -> str:
    """Render valid choices for an error message: 'a, b, c' (truncated past `limit`)."""
    items = [str(v) for v in values]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items) - limit} more)"
    return ", ".join(items)


def os_error(exc: OSError, path: "str | Path | None" = None, doing: str = "write") -> BlockSwapError:
    """One line for an `OSError`: what failed, on which path, and why ("No space left on device")."""
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = "; free some space and rerun (with --resume where offered)" if exc.errno == errno.ENOSPC else ""
    # An error without a path (os.write on a descriptor) names none rather than a placeholder:
    # callers that know the path pass it.
    what = f" {str(where)!r}" if where is not None else ""
    return BlockSwapError(f"cannot {doing}{what}: {reason}{hint}")
