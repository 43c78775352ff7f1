"""SynFlow and Jacobian covariance against independent computations (no autograd in the
references): a finite difference of the network output under a global weight scale, and a
brute-force finite-difference Jacobian."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import blockswap as bs


def test_synflow_equals_the_derivative_under_a_global_weight_scale():
    # SynFlow = sum over conv/linear weights of |w * dR/dw| on the |w| network (BN neutral,
    # all-ones input). There every activation is >= 0, so |w * dR/dw| = w * dR/dw, and by
    # Euler's identity the sum equals d/da R(a * W) at a = 1 (W: all conv/linear weights).
    torch.manual_seed(0)
    model = bs.build_model("wrn-10-1", "G(4),BG(2,M/4),B(2)")
    x = torch.randn(4, 3, 16, 16)
    score = bs.parse_signal("synflow")(model, [(x, None)])

    net = copy.deepcopy(model).double().eval()
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        base = [w.clone() for w in weights]

        def R(a: float) -> float:
            for w, b in zip(weights, base):
                w.copy_(a * b)
            return float(net(torch.ones(1, 3, 16, 16, dtype=torch.float64)).sum())

        h = 1e-4
        derivative = (R(1 + h) - R(1 - h)) / (2 * h)
    assert score == pytest.approx(derivative, rel=1e-5)


def test_jacob_cov_equals_the_formula_on_a_finite_difference_jacobian():
    # Mellor et al. (v1): J[n] = d(sum of all logits)/d x[n] (train-mode BN: the whole batch),
    # C = corrcoef of the rows, score = -sum(log(v + 1e-5) + 1 / (v + 1e-5)), v = eig(C).
    torch.manual_seed(1)
    model = bs.build_model("wrn-10-1", "S,G(N),B(2)").double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    score = bs.parse_signal("jacob_cov")(model, [(x, None)])

    model.train()
    flat = x.reshape(-1)
    jac = np.zeros(flat.numel())
    h = 1e-6
    with torch.no_grad():
        for i in range(flat.numel()):
            up, down = flat.clone(), flat.clone()
            up[i] += h
            down[i] -= h
            jac[i] = (float(model(up.view_as(x)).sum()) - float(model(down.view_as(x)).sum())) / (2 * h)
    corr = np.corrcoef(jac.reshape(x.shape[0], -1))
    v = np.linalg.eigvalsh(corr)
    expected = -np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5))
    assert score == pytest.approx(expected, rel=1e-4)

