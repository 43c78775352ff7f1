"""Helpers shared by the tests: the CLI in a subprocess, and independent reference computations
(no code from blockswap.proxies).

`brute_fisher` follows Theis et al.'s definition literally: a mask m[n, c] = 1 multiplies every
channel of every example at each probe, the mean cross-entropy is backpropagated with a plain
``loss.backward()``, and Delta_c = 1/(2N) sum_n (dL/dm[n,c])^2 is summed with explicit loops.
dL/dm[n,c] = sum_ij a[n,c,i,j] g[n,c,i,j], so this is the paper's Eq. (2) by another road.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 600):
    """Run `python -m blockswap ARGS` in a subprocess; return the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "blockswap", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def brute_fisher(model, x, y, loss_scale: float | None = None) -> list[float]:
    """Per-block Fisher of `model` (train mode) on (x, y), with explicit per-channel loops.

    `loss_scale`: multiply the summed loss by this instead of 1/N (for chunked references).
    """
    model.train()
    masks = []

    def hook(_module, _inputs, out):
        m = torch.ones(out.shape[0], out.shape[1], dtype=out.dtype, requires_grad=True)
        masks.append(m)
        return out * m[:, :, None, None]

    handles = [b.probe.register_forward_hook(hook) for b in model.blocks]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    n = x.shape[0]
    loss = F.cross_entropy(logits, y, reduction="sum") * (1.0 / n if loss_scale is None else loss_scale)
    loss.backward()
    total_n = n if loss_scale is None else round(1 / loss_scale)
    per_block = []
    for m in masks:
        g = m.grad.double().tolist()
        block = 0.0
        for c in range(len(g[0])):
            block += sum(g[i][c] ** 2 for i in range(n)) / (2 * total_n)
        per_block.append(block)
    return per_block
