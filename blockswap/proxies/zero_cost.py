"""Later training-free proxies that users compare the Fisher potential with (one minibatch at
initialisation), each as its public reference computes it (docs/signals.md gives formulas,
references and the measured agreement on identical weights):

* snip, grad_norm, synflow, l2_norm: SamsungLabs/zero-cost-nas, foresight/pruners/measures/;
* naswot (``hook_logdet``) and jacob_cov: BayesWatch/nas-without-training, score_networks.py
  (jacob_cov also zero-cost-nas's jacob_cov.py).

Every signal that runs the network in train mode runs it as the Fisher potential does
(`execution.exact_run`: exact BN on the CPU, the search's memory format).
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .execution import exact_run, weights
from .fisher import check_probes
from .probes import probe_outputs
from .registry import register_proxy


def _forward(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """model(x), refusing a network that overflowed (non-finite or all-zero block outputs,
    e.g. inputs of 1e30: BN's float32 variance is infinite) as the Fisher potential does;
    otherwise SNIP and grad_norm would be exactly 0.0 and NASWOT a degenerate -inf."""
    if not getattr(model, "blocks", None):
        return model(x)
    with probe_outputs(model) as acts:
        out = model(x)
    check_probes(acts, name)
    return out


def _weight_grads(model, batches, options, name) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """dL/dW of the mean cross-entropy over the first minibatch, for every conv/linear weight."""
    x, y = batches[0]
    ws = weights(model)
    with exact_run(model, x, options.memory_format) as x:
        loss = F.cross_entropy(_forward(model, x, name), y)
        return ws, torch.autograd.grad(loss, ws)


@register_proxy("snip", higher_is_better=True)
def _snip(model, batches, steps, options):
    """SNIP: sum over conv/linear weights of |w * dL/dw| on the minibatch (Lee et al. 2019)."""
    ws, grads = _weight_grads(model, batches, options, "snip")
    with torch.no_grad():
        return float(sum((w * g).abs().sum(dtype=torch.float64) for w, g in zip(ws, grads)))


@register_proxy("grad_norm", higher_is_better=True)
def _grad_norm(model, batches, steps, options):
    """Gradient norm: sum over conv/linear weights of ||dL/dW||_F (zero-cost-nas grad_norm)."""
    _, grads = _weight_grads(model, batches, options, "grad_norm")
    with torch.no_grad():
        return float(sum(g.double().norm() for g in grads))


@register_proxy("l2_norm", higher_is_better=True, labels=False)
def _l2_norm(model, batches, steps, options):
    """Weight norm: sum over conv/linear weights of ||W||_F at initialisation (zero-cost-nas)."""
    with torch.no_grad():
        return float(sum(w.double().norm() for w in weights(model)))


@contextlib.contextmanager
def _identity_batch_norm(model: nn.Module) -> Iterator[None]:
    """Every BN layer of `model` is the identity within the block (zero-cost-nas ``copynet``
    with bn=False replaces BN's forward by a no-op); restored on exit."""
    patched = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in patched:
        m.forward = lambda x: x
    try:
        yield
    finally:
        for m in patched:
            del m.forward


@register_proxy("synflow", higher_is_better=True, labels=False)
def _synflow(model, batches, steps, options):
    """SynFlow: sum |w * dR/dw|, R = sum of outputs of the |w| network on an all-ones input.

    As zero-cost-nas's ``synflow`` (bn=False; Abdelfattah et al. 2021): on a float64 copy with
    every parameter made non-negative and BN the identity, so the value depends on the
    weights alone, never on BN running statistics left by an earlier forward. One input of 1s.
    """
    x, _ = batches[0]
    net = copy.deepcopy(model).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ws = weights(net)
    with _identity_batch_norm(net):
        out = net(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device))
    grads = torch.autograd.grad(out.sum(), ws)
    with torch.no_grad():
        return float(sum((w * g).abs().sum() for w, g in zip(ws, grads)))


@register_proxy("naswot", higher_is_better=True, labels=False)
def _naswot(model, batches, steps, options):
    """NASWOT: log|K|, K[i,j] = number of ReLUs on which examples i and j agree (Mellor et al.)."""
    x, _ = batches[0]
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(_m, _i, out):
        # out > 0 iff the ReLU's input > 0 (the reference codes the input; ours are in place)
        c = (out.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with exact_run(model, x, options.memory_format) as x, torch.no_grad():
            _forward(model, x, "naswot")
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


@register_proxy("jacob_cov", higher_is_better=True, labels=False)
def _jacob_cov(model, batches, steps, options):
    """Jacobian covariance: -sum(log(v + k) + 1/(v + k)), v the eigenvalues of the correlation
    matrix of the per-example input Jacobians (Mellor et al. 2021, v1; k = 1e-5)."""
    x, _ = batches[0]
    with exact_run(model, x, options.memory_format) as x:
        x = x.detach().clone().requires_grad_(True)
        (jac,) = torch.autograd.grad(_forward(model, x, "jacob_cov").sum(), x)
    corr = np.corrcoef(jac.reshape(x.shape[0], -1).double().cpu().numpy())
    if not np.all(np.isfinite(corr)):
        return -math.inf
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))
