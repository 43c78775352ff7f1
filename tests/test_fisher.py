"""The Fisher potential and the other ranking signals, against independent computations."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import blockswap
from blockswap import BlockSwapError, fisher_potential, parse_signal
from blockswap.proxies import get_proxy

from helpers import brute_fisher

GENO = "S,G(4),B(2),BG(2,M/4),G(N),BG(2,4)"  # wrn-16-1: every family, every stage


def tiny(seed=0, geno=GENO):
    torch.manual_seed(seed)
    return blockswap.build_model("wrn-16-1", geno)


def batch(n=6, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_fisher_equals_brute_force_per_channel_loops():
    x, y = batch()
    model = tiny()
    reference = brute_fisher(copy.deepcopy(model), x, y)
    fp = fisher_potential(model, x, y)
    assert len(fp.per_block) == 6
    np.testing.assert_allclose(fp.per_block, reference, rtol=1e-5)
    assert fp.total == pytest.approx(sum(reference), rel=1e-5)
    assert all(v > 0 for v in fp.per_block)


def test_fisher_uses_the_mean_loss_and_1_over_2N():
    # The batch twice over: BN statistics are unchanged, so each example's activations are too;
    # the mean-loss gradient halves, so each squared term quarters, and 2N terms over 2*(2N)
    # leave Delta at exactly a quarter. A sum loss or a missing 1/(2N) would break this.
    x, y = batch(n=4)
    single = fisher_potential(tiny(), x, y).total
    double = fisher_potential(tiny(), torch.cat([x, x]), torch.cat([y, y])).total
    assert double == pytest.approx(single / 4, rel=1e-4)


def test_fisher_leaves_weights_and_grads_alone():
    x, y = batch()
    model = tiny()
    before = {k: v.clone() for k, v in model.named_parameters()}
    fisher_potential(model, x, y)
    for name, p in model.named_parameters():
        assert p.grad is None, name
        assert torch.equal(p, before[name]), name


def test_checkpointing_gives_the_same_value():
    x, y = batch()
    plain = fisher_potential(tiny(), x, y)
    checked = fisher_potential(tiny(), x, y, checkpoint=True)
    np.testing.assert_allclose(checked.per_block, plain.per_block, rtol=1e-6)


def test_micro_batches_are_per_chunk_bn_as_documented():
    x, y = batch(n=8)
    chunked = fisher_potential(tiny(), x, y, micro_batch=4)
    # Reference: each chunk on its own (its own BN statistics), loss weighted 1/N of the batch.
    ref = np.zeros(6)
    for s in (slice(0, 4), slice(4, 8)):
        ref += brute_fisher(tiny(), x[s], y[s], loss_scale=1 / 8)
    np.testing.assert_allclose(chunked.per_block, ref, rtol=1e-5)
    assert fisher_potential(tiny(), x, y, micro_batch=8).total == pytest.approx(
        fisher_potential(tiny(), x, y).total, rel=1e-6)


def test_the_search_scores_equal_float64_in_every_block():
    # The search's own path (Scorer: channels-last with exact BN on the CPU, or contiguous)
    # against float64, on a network of every block family, grouped and depthwise included.
    # PyTorch's native channels-last BN sums its float32 statistics naively: 2e-4 off here.
    # (On deep networks every float32 path, contiguous included, drifts further from float64:
    # docs/search.md, "Exact scoring".)
    from blockswap.search import RunOptions, Scorer, ScoringData, SearchConfig

    geno = "G(N),BG(2,M/4),B(2),G(4),BG(4,M/4),S"
    x, y = batch(n=32)
    config = SearchConfig(model="wrn-16-1", budget="100k", samples=1, data="synthetic", batch_size=32)
    for fmt in ("channels_last", "contiguous"):
        scorer = Scorer(config, ScoringData(((x.numpy(), y.numpy()),), 10), RunOptions(memory_format=fmt))
        row = scorer.score((0, geno, "full"))
        ref = scorer.build(geno).double().to(memory_format=torch.contiguous_format)
        expected = brute_fisher(ref, x.double(), y)  # float64, native BN, per-channel loops
        np.testing.assert_allclose(row["per_block"], expected, rtol=1e-5, err_msg=fmt)


def test_fisher_after_two_sgd_steps_sums_each_steps_fisher():
    (x0, y0), (x1, y1) = batch(seed=1), batch(seed=2)
    ref_model = tiny()
    first = sum(brute_fisher(ref_model, x0, y0))
    opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    ref_model.zero_grad()
    F.cross_entropy(ref_model(x0), y0).backward()
    opt.step()
    ref_model.zero_grad()
    second = sum(brute_fisher(ref_model, x1, y1))
    value = parse_signal("fisher@2")(tiny(), [(x0, y0), (x1, y1)])
    assert value == pytest.approx(first + second, rel=1e-4)


def test_snip_and_accuracy_signals_match_direct_formulas():
    x, y = batch()
    model = tiny()
    model.train()
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    snip = sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert parse_signal("snip")(tiny(), [(x, y)]) == pytest.approx(snip, rel=1e-5)
    acc = float((logits.argmax(1) == y).float().mean())
    assert parse_signal("train_acc@1")(tiny(), [(x, y)]) == pytest.approx(acc)
    stepped = tiny()
    opt = torch.optim.SGD(stepped.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    F.cross_entropy(stepped(x), y).backward()
    opt.step()
    # "sum of L2 norms of the weights" (Table 1): conv and linear weights, BN's gammas excluded
    norms = sum(float(m.weight.detach().norm()) for m in stepped.modules()
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert parse_signal("weight_l2@1")(tiny(), [(x, y)]) == pytest.approx(norms, rel=1e-6)
    assert parse_signal("l2@1")(tiny(), [(x, y)]) == pytest.approx(norms, rel=1e-6)  # BlockSwap 0.1's name


def test_naswot_matches_hamming_kernel():
    x, _ = batch(n=5)
    model = tiny()
    codes = []
    handles = [m.register_forward_hook(lambda _m, _i, o: codes.append((o.detach().reshape(5, -1) > 0).numpy()))
               for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    model.train()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    c = np.concatenate(codes, axis=1)
    units = c.shape[1]
    k = np.array([[units - np.sum(c[i] != c[j]) for j in range(5)] for i in range(5)], dtype=float)
    assert parse_signal("naswot")(tiny(), [(x, None)]) == pytest.approx(np.linalg.slogdet(k)[1], rel=1e-9)


def test_synflow_and_jacob_cov_are_finite_and_leave_the_model_alone():
    x, y = batch()
    model = tiny()
    before = copy.deepcopy(model.state_dict())
    assert math.isfinite(parse_signal("synflow")(model, [(x, y)])) and parse_signal("synflow")(model, [(x, y)]) > 0
    assert math.isfinite(parse_signal("jacob_cov")(model, [(x, y)]))
    for k, v in model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, before[k]), k


def test_registry_is_strict():
    with pytest.raises(BlockSwapError, match="valid signals: fisher, train_acc, weight_l2, grad_l1, snip.*"
                                             "did you mean 'fisher'"):
        get_proxy("fishr")
    with pytest.raises(BlockSwapError, match="one minibatch at initialisation"):
        parse_signal("snip@3")
    assert parse_signal("fisher@10").steps == 10 and parse_signal("FISHER").name == "fisher"
    assert all(p.higher_is_better for p in blockswap.PROXIES.values())
    with pytest.raises(BlockSwapError, match="needs 3 minibatches"):
        parse_signal("fisher@3")(tiny(), [batch()])


def test_bad_batches_are_one_line_errors():
    with pytest.raises(BlockSwapError, match="at least 2 examples"):
        fisher_potential(tiny(), *batch(n=1))
    with pytest.raises(BlockSwapError, match="not both"):
        fisher_potential(tiny(), *batch(), checkpoint=True, micro_batch=4)


@pytest.mark.parametrize("model, inputs, match", [
    (None, None, "model must be a torch.nn.Module"),
    (torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10)), None,
     "model must be a BlockSwap network"),
    ("net", torch.randn(6, 1, 16, 16), "inputs have 1 channels but the model's first conv takes 3"),
    ("net", torch.randn(6, 3, 16, 16, dtype=torch.float64), "inputs are torch.float64 but the model's weights"),
    ("net", torch.randn(6, 3, 16, 16).half(), "inputs are torch.float16 but the model's weights"),
    ("net", torch.randn(6, 3, 16), "inputs must be a floating-point tensor"),
])
def test_bad_arguments_are_one_line_errors_naming_the_argument(model, inputs, match):
    # issue 21: these ended in raw AttributeError / TypeError / RuntimeError from deep inside
    x, y = batch()
    model = tiny() if model == "net" else model
    with pytest.raises(BlockSwapError, match=match) as info:
        fisher_potential(model, x if inputs is None else inputs, y)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scale", [1e30, 0.0])
def test_overflow_to_zero_activations_is_reported_not_scored(scale):
    # 1e30 inputs: BN's float32 variance overflows, every normalised activation is 0 and the
    # potential came out exactly 0.0 with no error (issue 21); all-zero inputs likewise.
    from blockswap.proxies import NonFiniteSignal

    x, y = batch()
    with pytest.raises(NonFiniteSignal, match="activations of block 0 are all zero"):
        fisher_potential(tiny(), x * scale, y)
    for name in ("fisher@2", "snip", "grad_norm", "naswot", "jacob_cov"):
        with pytest.raises(NonFiniteSignal, match="all zero"):
            parse_signal(name)(tiny(), [(x * scale, y), (x, y)])
    assert fisher_potential(tiny(), x * 1e3, y).total > 0  # large but representable: scored
