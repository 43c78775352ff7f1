"""Every ranking signal against a plain independent computation (no blockswap.proxies code in
the references: explicit loops, plain autograd on a float64 copy with native BN, finite
differences, torch's flop counter), and the rank-by aggregates against a brute-force loop."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import blockswap as bs
from blockswap import BlockSwapError
from blockswap.proxies import MeanRank, ProxyOptions, average_ranks, parse_rank_by

GENO = "G(4),BG(2,M/4),B(2)"  # wrn-10-1: grouped, bottleneck-grouped and bottleneck blocks


def net(seed=0, geno=GENO):
    torch.manual_seed(seed)
    return bs.build_model("wrn-10-1", geno)


def batch(n=8, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def conv_linear(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def float64_grads(model, x, y):
    """dL/dW of every conv/linear weight by plain autograd on a float64 copy (native BN)."""
    ref = copy.deepcopy(model).double().train()
    F.cross_entropy(ref(x.double()), y).backward()
    return [(w.detach(), w.grad) for w in conv_linear(ref)]


def without_bn(model):
    """A float64 copy with every BatchNorm2d module replaced by nn.Identity, by hand."""
    ref = copy.deepcopy(model).double()
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.Identity())
    return ref


# ---- SynFlow ----------------------------------------------------------------------------------

def test_synflow_equals_the_derivative_under_a_global_weight_scale():
    # SynFlow = sum over conv/linear weights of |w * dR/dw| on the |w| network (BN removed, as
    # zero-cost-nas bn=False), all-ones input. Every activation is >= 0, so |w dR/dw| = w dR/dw,
    # and by Euler's identity the sum equals d/da R(a * W) at a = 1 (W: all conv/linear weights).
    model = net()
    score = bs.parse_signal("synflow")(model, [(torch.randn(4, 3, 16, 16), None)])
    ref = without_bn(model)
    weights = conv_linear(ref)
    with torch.no_grad():
        for p in ref.parameters():
            p.abs_()
        base = [w.clone() for w in weights]

        def R(a: float) -> float:
            for w, b in zip(weights, base):
                w.copy_(a * b)
            return float(ref(torch.ones(1, 3, 16, 16, dtype=torch.float64)).sum())

        h = 1e-4
        derivative = (R(1 + h) - R(1 - h)) / (2 * h)
    assert score == pytest.approx(derivative, rel=1e-6)


def test_synflow_is_unchanged_by_an_earlier_signal_and_leaves_the_model_alone():
    # docs/api.md's pattern: several signals on one model. Train-mode signals move BN's running
    # statistics; SynFlow must not read them (it did, by +7% to +36%, through eval-mode BN).
    x, y = batch()
    fresh = bs.parse_signal("synflow")(net(), [(x, None)])
    model = net()
    for name in ("fisher", "snip", "naswot"):
        bs.parse_signal(name)(model, [(x * 3 + 1, y)])
    before = copy.deepcopy(model.state_dict())
    assert bs.parse_signal("synflow")(model, [(x, None)]) == fresh
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all("forward" not in m.__dict__ for m in model.modules())  # BN forward restored


# ---- SNIP and grad_norm: one minibatch, exact BN in either memory format --------------------

@pytest.mark.parametrize("fmt", ["channels_last", "contiguous"])
def test_snip_and_grad_norm_equal_float64_autograd(fmt):
    # SNIP = sum |w * dL/dw|; grad_norm (zero-cost-nas) = sum over conv/linear weights of the
    # Frobenius norm of dL/dW. The reference: float64 copy, native BN, loss.backward().
    # On this minibatch PyTorch's own channels-last BN puts SNIP 1.5e-4 off float64, the exact
    # BN 3.4e-5 (float32 rounding elsewhere; 4.8e-5 contiguous): the bound tells them apart.
    x, y = batch(n=64, size=32)
    model = net().to(memory_format=torch.channels_last)
    grads = float64_grads(model, x, y)
    snip = sum(float((w * g).abs().sum()) for w, g in grads)
    grad_norm = sum(math.sqrt(float((g * g).sum())) for _, g in grads)
    opts = ProxyOptions(memory_format=fmt)
    xin = x.contiguous(memory_format=torch.channels_last)
    assert bs.parse_signal("snip")(model, [(xin, y)], opts) == pytest.approx(snip, rel=1e-4)
    assert bs.parse_signal("grad_norm")(model, [(xin, y)], opts) == pytest.approx(grad_norm, rel=1e-4)
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)  # layout restored


def test_l2_norm_is_the_sum_of_frobenius_norms_of_conv_and_linear_weights():
    model = net()
    expected = sum(np.sqrt(np.sum(w.detach().double().numpy() ** 2)) for w in conv_linear(model))
    assert bs.parse_signal("l2_norm")(model, [batch()]) == pytest.approx(expected, rel=1e-12)


# ---- NASWOT and Jacobian covariance --------------------------------------------------------

def test_naswot_is_the_logdet_of_the_explicit_binary_code_kernel():
    # Mellor et al. (v2): c_i = binary code of example i over every ReLU (unit > 0); K[i, j] =
    # number of units where c_i and c_j agree. Reference: float64 copy, explicit double loop.
    x, _ = batch(n=5)
    ref = copy.deepcopy(net()).double().train()
    codes = []
    handles = [m.register_forward_hook(lambda _m, _i, o: codes.append((o.detach().reshape(5, -1) > 0).numpy()))
               for m in ref.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        ref(x.double())
    for h in handles:
        h.remove()
    c = np.concatenate(codes, axis=1)
    k = np.array([[np.sum(c[i] == c[j]) for j in range(5)] for i in range(5)], dtype=float)
    assert bs.parse_signal("naswot")(net(), [(x, None)]) == pytest.approx(np.linalg.slogdet(k)[1], rel=1e-9)


def test_jacob_cov_equals_the_formula_on_a_finite_difference_jacobian():
    # Mellor et al. (v1): J[n] = d(sum of all logits)/d x[n] (train-mode BN: the whole batch),
    # C = corrcoef of the rows, score = -sum(log(v + 1e-5) + 1 / (v + 1e-5)), v = eig(C).
    model = bs.build_model("wrn-10-1", "S,G(N),B(2)").double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    score = bs.parse_signal("jacob_cov")(model, [(x, None)], ProxyOptions(memory_format="contiguous"))
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
    v = np.linalg.eigvals(np.corrcoef(jac.reshape(x.shape[0], -1))).real
    assert score == pytest.approx(-np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5)), rel=1e-4)


def test_jacob_cov_in_channels_last_equals_float64():
    x, _ = batch(n=16)
    model = net()
    ref = copy.deepcopy(model).double().train()
    xd = x.double().requires_grad_(True)
    (jac,) = torch.autograd.grad(ref(xd).sum(), xd)
    v = np.linalg.eigvalsh(np.corrcoef(jac.reshape(16, -1).numpy()))
    expected = -np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5))
    got = bs.parse_signal("jacob_cov")(model.to(memory_format=torch.channels_last), [(x, None)])
    assert got == pytest.approx(expected, rel=1e-4)


# ---- the paper's Table 1 quantities over k SGD steps ----------------------------------------

def test_weight_l2_and_grad_l1_after_two_sgd_steps_match_an_explicit_loop():
    (x0, y0), (x1, y1) = batch(seed=1), batch(seed=2)
    ref = net()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    grad_l1 = 0.0
    for x, y in ((x0, y0), (x1, y1)):
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        grad_l1 += sum(float(w.grad.abs().double().sum()) for w in conv_linear(ref))
        opt.step()
    weight_l2 = sum(float(w.detach().double().norm()) for w in conv_linear(ref))
    batches = [(x0, y0), (x1, y1)]
    assert bs.parse_signal("weight_l2@2")(net(), batches) == pytest.approx(weight_l2, rel=1e-5)
    assert bs.parse_signal("grad_l1@2")(net(), batches) == pytest.approx(grad_l1, rel=1e-4)


def test_the_names_of_blockswap_0_1_still_parse_to_the_table_1_signals():
    assert bs.parse_signal("l2@10") == bs.parse_signal("weight_l2@10")
    assert bs.parse_signal("l2") == bs.parse_signal("weight_l2@1")
    assert bs.parse_signal("grad_norm@10") == bs.parse_signal("grad_l1@10")
    assert bs.parse_signal("grad_norm@1").name == "grad_l1"
    assert bs.parse_signal("grad_norm").name == "grad_norm"  # the field's, one minibatch
    with pytest.raises(BlockSwapError, match="one minibatch at initialisation"):
        bs.parse_signal("snip@3")


# ---- cost signals -----------------------------------------------------------------------------

@pytest.mark.parametrize("geno", [GENO, "S,BG(4,M/4),G(N)"])
def test_params_and_macs_equal_numel_and_the_flop_counter(geno):
    model = net(geno=geno)
    x, _ = batch(n=2, size=24)
    with FlopCounterMode(display=False) as counter:
        model.eval()(x[:1])
    params = bs.parse_signal("params")(model, [(x, None)])
    assert params == sum(p.numel() for p in model.parameters())
    assert bs.parse_signal("macs")(model, [(x, None)]) == counter.get_total_flops() / 2


# ---- ranking by a signal or an aggregate ------------------------------------------------------

def brute_rank(values, higher):
    """Rank of each key by counting: 1 + (number strictly better) + (ties - 1) / 2; missing last."""
    ok = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    out = {}
    for k, v in ok.items():
        better = sum(1 for w in ok.values() if (w > v if higher else w < v))
        ties = sum(1 for w in ok.values() if w == v)
        out[k] = 1 + better + (ties - 1) / 2
    bad = [k for k in values if k not in ok]
    for k in bad:
        out[k] = len(ok) + 1 + (len(bad) - 1) / 2
    return out


def test_mean_rank_equals_a_brute_force_rank_loop():
    rng = np.random.default_rng(0)
    values = {}
    for i in range(12):
        values[i] = {"fisher": float(rng.integers(0, 4)), "macs": float(rng.integers(0, 3)),
                     "synflow": [None, math.nan, 1.0, 2.0][i % 4]}
    agg = parse_rank_by("mean_rank(fisher, macs, synflow)")
    assert isinstance(agg, MeanRank) and agg.name == "mean_rank(fisher,macs,synflow)"
    per = [brute_rank({i: v[s] for i, v in values.items()}, True) for s in ("fisher", "macs", "synflow")]
    expected = {i: sum(r[i] for r in per) / 3 for i in values}
    assert agg.scores(values) == pytest.approx(expected)
    order = agg.order(values)
    assert order == sorted(values, key=lambda i: (expected[i], i))
    assert average_ranks({0: 5.0, 1: 5.0, 2: None, 3: 1.0}, higher_is_better=False) == {3: 1, 0: 2.5, 1: 2.5, 2: 4}


def test_rank_by_is_strict_and_a_plain_signal_ranks_as_before():
    with pytest.raises(BlockSwapError, match="did you mean 'mean_rank'"):
        parse_rank_by("mean_rnk(fisher,macs)")
    with pytest.raises(BlockSwapError, match="unknown ranking signal 'fishr'"):
        parse_rank_by("mean_rank(fishr,macs)")
    with pytest.raises(BlockSwapError, match="two or more distinct"):
        parse_rank_by("mean_rank(fisher,fisher)")
    from blockswap.search import SearchConfig

    with pytest.raises(BlockSwapError, match="a two-round search ranks its first round by one signal"):
        SearchConfig(halving=True, rank_by="mean_rank(fisher,macs)")
    signal = parse_rank_by("fisher")
    values = {0: {"fisher": 1.0}, 1: {"fisher": 3.0}, 2: {"fisher": None}}
    assert signal.order(values) == [1, 0, 2]


def test_a_search_ranks_by_an_aggregate_and_records_it(tmp_path):
    from blockswap.search import RunOptions, SearchConfig, run_search

    config = SearchConfig(model="wrn-10-1", budget="60k", tolerance=0.2, samples=3, data="synthetic",
                          batch_size=4, input_size=16, signals=("snip",), rank_by="mean_rank(fisher,macs)")
    assert [s.name for s in config.signals] == ["fisher", "macs", "snip"]
    result = run_search(config, tmp_path / "s", run=RunOptions(progress=False))
    assert result.signal == "mean_rank(fisher,macs)"
    values = {t["index"]: t["signals"] for t in result.top}
    per = [brute_rank({i: v[s] for i, v in values.items()}, True) for s in ("fisher", "macs")]
    mean = {i: (per[0][i] + per[1][i]) / 2 for i in values}
    assert [t["index"] for t in result.top] == sorted(values, key=lambda i: (mean[i], i))
    assert config.to_dict()["rank_by"] == "mean_rank(fisher,macs)"
    assert SearchConfig.from_dict(config.to_dict()) == config
    assert SearchConfig(signals=("snip", "fisher")).rank_by.name == "snip"  # default: the first signal


def test_the_cli_ranks_by_an_aggregate_and_records_it_in_run_json(tmp_path, capsys):
    import json

    from blockswap.cli import main

    out = tmp_path / "s"
    code = main(["search", "--model", "wrn-10-1", "--budget", "60k", "--tolerance", "0.2", "--samples", "2",
                 "--data", "synthetic", "--batch-size", "4", "--input-size", "16", "--executor", "local",
                 "--rank-by", "mean_rank(fisher, params)", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["signal"] == "mean_rank(fisher,params)"
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["rank_by"] == "mean_rank(fisher,params)"
    assert record["config"]["signals"] == ["fisher", "params"]
    assert main(["search", "--data", "synthetic", "--out", str(tmp_path / "t"), "--rank-by", "mean_rnak(fisher,macs)"]) != 0
    assert "did you mean 'mean_rank'" in capsys.readouterr().err
