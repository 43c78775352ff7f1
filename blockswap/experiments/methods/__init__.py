"""Experiment methods, one registered `Method` per file (`METHODS`); adding one is one new file
with one `METHODS.add` (docs/architecture.md). Registration order is the order of the docs."""

# Registration order is the docs' order (blockswap first); isort must not reorder it.
from . import blockswap, random, single, reduced, prune, sensitivity  # noqa: F401 (importing registers them)
from .base import METHODS, Method, MethodSpec, NoOptions, search_samples
from .random import DEFAULT_SIGNALS
from .single import nearest_single_types

__all__ = ["DEFAULT_SIGNALS", "METHODS", "Method", "MethodSpec", "NoOptions", "nearest_single_types",
           "search_samples"]
