"""Every random choice flows from one run seed.

Streams (model initialisation, data order, the search's minibatch, each candidate's weights)
get their own seed by hashing a label that names them, so adding a stream never shifts another
and a seed means the same on every machine and in every process. Code that must draw from
torch's global generator (module constructors) does so inside `torch_seed`, which forks the
global RNG state and restores it afterwards: the caller's random state is never disturbed.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch


def seed_from(label: str) -> int:
    """A 63-bit seed from a label (first 8 bytes of its SHA-256, little-endian, shifted right)."""
    digest = hashlib.sha256(label.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextlib.contextmanager
def torch_seed(seed: int) -> Iterator[None]:
    """Seed torch's global CPU generator for the block, then restore the previous state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
