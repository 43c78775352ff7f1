"""Later training-free proxies that users compare the Fisher potential with (one minibatch at
initialisation): SNIP, SynFlow, NASWOT and Jacobian covariance."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_proxy


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights: the prunable parameters SNIP and SynFlow score."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@register_proxy("snip", higher_is_better=True)
def _snip(model, batches, steps, options):
    """SNIP: sum over conv/linear weights of |w * dL/dw| on the minibatch (Lee et al. 2019)."""
    x, y = batches[0]
    model.train()
    weights = _weights(model)
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    with torch.no_grad():
        return float(sum((w * g).abs().sum(dtype=torch.float64) for w, g in zip(weights, grads)))


@register_proxy("synflow", higher_is_better=True, labels=False)
def _synflow(model, batches, steps, options):
    """SynFlow: sum |w * dR/dw|, R = sum of outputs of the |w| network on an all-ones input.

    As the zero-cost-proxy reference code (Abdelfattah et al. 2021): float64, every weight made
    non-negative, BN neutral (eval mode with its initial statistics, i.e. no BN), one input of 1s.
    Runs on a copy; `model` is left as it was.
    """
    x, _ = batches[0]
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    weights = _weights(net)
    out = net(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device))
    grads = torch.autograd.grad(out.sum(), weights)
    with torch.no_grad():
        return float(sum((w * g).abs().sum() for w, g in zip(weights, grads)))


@register_proxy("naswot", higher_is_better=True, labels=False)
def _naswot(model, batches, steps, options):
    """NASWOT: log|K|, K[i,j] = number of ReLUs on which examples i and j agree (Mellor et al.)."""
    x, _ = batches[0]
    model.train()
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(_m, _i, out):
        c = (out.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
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
    model.train()
    x = x.detach().clone().requires_grad_(True)
    (jac,) = torch.autograd.grad(model(x).sum(), x)
    corr = np.corrcoef(jac.reshape(x.shape[0], -1).double().cpu().numpy())
    if not np.all(np.isfinite(corr)):
        return -math.inf
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))
