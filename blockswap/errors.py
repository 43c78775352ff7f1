"""The one exception type users see.

Every check on user input raises `BlockSwapError` with a one-line message that names the bad
value and the valid choices. It subclasses `ValueError` so that library users can catch it the
way they catch torchvision's loud `ValueError`s; the CLI prints its message and exits non-zero
instead of showing a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable


class BlockSwapError(ValueError):
    """Bad input to BlockSwap: a wrong name, file, genotype, budget or setting."""


def choices(values: Iterable[object], limit: int = 40) -> str:
    """Render valid choices for an error message: 'a, b, c' (truncated past `limit`)."""
    items = [str(v) for v in values]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items) - limit} more)"
    return ", ".join(items)
