"""Every random choice flows from one run seed, through one derivation.

A stream (a model's initialisation, the data order, the search's minibatch, each candidate's
weights) gets its own seed, ``derive_seed(run_seed, *labels)``: a hash of the run seed and the
labels that name the stream, so adding a stream never shifts another and a seed means the same
on every machine and in every process. Code that must draw from torch's global generator
(module constructors) does so inside `torch_seed`, which forks the global RNG state and restores
it afterwards: the caller's random state is never disturbed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Iterator

import torch


def derive_seed(run_seed: int, *labels: str) -> int:
    """A 63-bit seed for the stream named by `labels` of the run seeded by `run_seed`.

    The first 8 bytes (little-endian) of the SHA-256 of the JSON list ``[run_seed, *labels]``,
    shifted right by one bit.
    """
    digest = hashlib.sha256(json.dumps([int(run_seed), *map(str, labels)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextlib.contextmanager
def torch_seed(seed: int) -> Iterator[None]:
    """Seed torch's global CPU generator for the block, then restore the previous state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
