"""The paper's published numbers, stored as data beside the presets (``paper.json``), so that
a report shows ours and theirs side by side. Only numbers printed in the paper's text are
stored; what the text we hold lacks is said in each set's ``missing``."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from ..errors import BlockSwapError, choices


@functools.cache
def _all() -> dict[str, Any]:
    return json.loads((resources.files(__package__) / "paper.json").read_text())


def paper_sets() -> list[str]:
    return sorted(_all())


def paper_results(name: str) -> dict[str, Any]:
    """One set: ``errors`` (rows: method, params, macs, error, error_std), maybe ``correlations``."""
    if name not in _all():
        raise BlockSwapError(f"unknown paper results {name!r}; valid: {choices(paper_sets())}")
    return _all()[name]
