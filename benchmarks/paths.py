"""Candidates and Fisher scoring paths shared by the benchmarks, measured against each other.

`probes` is `blockswap.fisher_potential`'s computation with batch norm left as the caller set it
up (the package function routes BN through `exact_batch_norm` itself, so it cannot time native
BN); `naive` is the authors' path: a full ``loss.backward()`` and tensor hooks at the probes.
Both return the Fisher of every block.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from blockswap.proxies import block_fisher, probe_outputs
from blockswap.search import sample_genotypes
from blockswap.space import CostTable, default_candidates, network_spec, parse_budget


def genotypes(model: str, budget: str, n: int, seed: int) -> list[str]:
    """`n` random students of `model` within `budget` +- 2.5%, as the search samples them."""
    cands = default_candidates()
    table = CostTable(network_spec(model), cands)
    report = sample_genotypes(table, parse_budget(budget), n, np.random.default_rng(seed))
    return [",".join(cands[j].name for j in row) for row in report.choices]


def probes(model, x, y) -> np.ndarray:
    """Gradients to the probes only (no weight gradient), BN as the caller set it up."""
    model.train()
    with probe_outputs(model) as acts:
        logits = model(x)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), acts)
    return np.array([block_fisher(a, g, x.shape[0]) for a, g in zip(acts, grads)])


def naive(model, x, y) -> np.ndarray:
    """The authors' path: full loss.backward() (every weight gradient), tensor hooks at probes."""
    acts, grads = [], []

    def keep(_m, _i, out):
        acts.append(out)
        out.register_hook(grads.append)  # a tensor hook, not a deprecated module backward hook

    handles = [b.probe.register_forward_hook(keep) for b in model.blocks]
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for h in handles:
        h.remove()
    grads.reverse()  # the backward pass visits the probes last to first
    return np.array([block_fisher(a, g, x.shape[0]) for a, g in zip(acts, grads)])
