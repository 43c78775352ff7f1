"""Analytic costs must equal what the instantiated PyTorch model reports.

Parameters are checked against sum(p.numel()) of the built modules and MACs against half of
torch.utils.flop_counter's conv + linear FLOPs, for every candidate type at every block
position, and for whole networks; plus the paper's own figures.
"""

import numpy as np
import pytest
import torch

from helpers import check_block_costs, counted
import blockswap as bs
from blockswap.nn import Block
from blockswap.space import Complexity
from blockswap.space.costs import block_complexity
from blockswap.space import CostTable, parse_budget, parse_count
from blockswap.space import network_spec


@pytest.mark.parametrize("network", ["wrn-40-2", "resnet34"])
def test_every_candidate_at_every_position_matches_pytorch(network):
    assert check_block_costs(network, bs.default_candidates()) > 0


def test_odd_spatial_sizes_and_strides_match_pytorch():
    for c_in, c_out, stride, size in [(16, 32, 2, 7), (32, 32, 1, 5), (24, 48, 2, 9)]:
        for name in ["S", "G(4)", "G(N/8)", "B(2)", "BG(2,M/4)", "BG(4,2)"]:
            block = bs.parse_block(name)
            if block.problem(c_in, c_out):
                continue
            module = Block(block, c_in, c_out, stride)
            cx = block_complexity(block, c_in, c_out, stride, Complexity(size, size))
            assert (cx.params, cx.macs) == counted(module, torch.randn(1, c_in, size, size)), name


def test_closed_form_block_costs_of_the_paper():
    # Paper Sec. 3.1 with BN counted: S has 2 k^2 N^2 weights, G(g) 2 (k^2 N^2 / g + N^2),
    # B(b) N^2/b * 2 + k^2 (N/b)^2, BG(b,g) the same with the 3x3 divided by g.
    n, k, hw = 64, 3, 8 * 8
    bn = lambda *chans: 2 * sum(chans)  # noqa: E731
    expected = {
        "S": (2 * k * k * n * n, bn(n, n)),
        "G(4)": (2 * (k * k * n * n // 4 + n * n), bn(n, n, n, n)),
        "G(N)": (2 * (k * k * n + n * n), bn(n, n, n, n)),
        "B(2)": (2 * n * n // 2 + k * k * (n // 2) ** 2, bn(n, n // 2, n // 2)),
        "BG(2,4)": (2 * n * n // 2 + k * k * (n // 2) ** 2 // 4, bn(n, n // 2, n // 2)),
        "BG(4,M/8)": (2 * n * n // 4 + k * k * (n // 4) * 8, bn(n, n // 4, n // 4)),
    }
    for name, (weights, bn_params) in expected.items():
        cx = block_complexity(name, n, n, 1, Complexity(8, 8))
        assert cx.params == weights + bn_params, name
        assert cx.macs == weights * hw, name


@pytest.mark.parametrize("network,genotype", [
    ("wrn-40-2", None),
    ("wrn-40-2", "reference:bs800k"),
    ("wrn-40-2", "reference:bs150k"),
    ("wrn-16-1", None),
    ("resnet18", None),
    ("resnet34", "reference:bs_imagenet_1"),
])
def test_network_cost_equals_built_model(network, genotype):
    c = bs.cost(network, genotype)
    model = bs.build_model(network, genotype)
    size = network_spec(network).input_size
    assert (c.params, c.macs) == counted(model, torch.randn(1, 3, size, size))
    assert c.params == c.fixed_params + sum(b.params for b in c.per_block)


def test_random_genotypes_and_other_sizes_equal_built_model():
    rng = np.random.default_rng(0)
    for network, size in [("wrn-16-2", 32), ("wrn-22-4", 48), ("wrn-10-1", 28)]:
        spec = network_spec(network, 7)
        table = CostTable(spec, bs.default_candidates(), size)
        for _ in range(3):
            names = [bs.default_candidates()[rng.choice(np.flatnonzero(table.valid[i]))].name
                     for i in range(spec.num_blocks)]
            c = bs.cost(network, names, input_size=size, num_classes=7)
            model = bs.build_model(network, names, num_classes=7)
            assert (c.params, c.macs) == counted(model, torch.randn(1, 3, size, size)), names


def test_paper_figures_for_wrn_40_2():
    # docs/paper.md: WRN-40-2 has 2,243,546 parameters; stem + final BN + classifier hold 1,978.
    c = bs.cost("wrn-40-2")
    assert c.params == 2_243_546
    assert c.fixed_params == 3 * 16 * 9 + 2 * 128 + 128 * 10 + 10 == 1978
    # Paper Table 2 / Appendix C: the BlockSwap students' parameter counts, in thousands.
    paper = {"bs800k": 811.4, "bs500k": 556.0, "bs400k": 404.2, "bs250k": 289.2,
             "bs200k": 217.0, "bs150k": 162.2}
    for name, thousands in paper.items():
        params = bs.cost("wrn-40-2", f"reference:{name}").params
        assert abs(params / 1e3 - thousands) <= 0.05 + 1e-9, (name, params)


def test_paper_figures_for_imagenet():
    # Table 3: ResNet-34 21.8M / 3.669G, ResNet-34-G(4) 8.1M / 1.395G, ResNet-34-G(N) 3.1M / 559M.
    # Parameters agree to the paper's rounding; the paper's MAC counter also counted ReLUs and
    # pooling, so conv + linear MACs sit up to 1% below its figures.
    cases = [(None, 21.8e6, 3.669e9), (bs.Genotype.uniform("resnet34", "G(4)"), 8.1e6, 1.395e9),
             (bs.Genotype.uniform("resnet34", "G(N)"), 3.1e6, 559e6)]
    for geno, params, macs in cases:
        c = bs.cost("resnet34", geno)
        assert abs(c.params - params) <= 0.05e6
        assert 0.985 * macs <= c.macs <= macs
    import torchvision
    teacher = torchvision.models.resnet34()
    assert abs(sum(p.numel() for p in teacher.parameters()) - 21.8e6) <= 0.05e6


def test_cost_table_matches_per_network_cost_and_range():
    spec = network_spec("wrn-16-1")
    cands = bs.default_candidates()
    table = CostTable(spec, cands)
    rng = np.random.default_rng(1)
    choice = np.stack([rng.choice(np.flatnonzero(table.valid[i]), size=5) for i in range(6)], axis=1)
    totals = table.totals(choice, "params")
    macs = table.totals(choice, "macs")
    for row, p, m in zip(choice, totals, macs):
        c = bs.cost("wrn-16-1", [cands[j] for j in row])
        assert (c.params, c.macs) == (p, m)


def test_cost_table_range_is_the_brute_force_extreme():
    import itertools

    cands = bs.parse_candidates("S,G(N),B(4),BG(4,M/2),G(16)")  # G(16) cannot split 16 -> invalid nowhere
    spec = network_spec("wrn-10-1")
    table = CostTable(spec, cands)
    for metric in ("params", "macs"):
        totals = [getattr(bs.cost("wrn-10-1", combo), metric)
                  for combo in itertools.product(cands, repeat=spec.num_blocks)]
        assert table.range(metric) == (min(totals), max(totals))


def test_budget_parsing():
    assert parse_count("800k") == 800_000
    assert parse_count("1.6M") == 1_600_000
    assert parse_count("2,243,546") == 2_243_546
    b = parse_budget("macs=90M", tolerance=0.05)
    assert (b.metric, b.target, b.lower, b.upper) == ("macs", 90e6, 85.5e6, 94.5e6)
    assert parse_budget("800k").metric == "params"
    for bad in ["800q", "flops=1M", "", "-5k"]:
        with pytest.raises(bs.BlockSwapError):
            parse_budget(bad)
    with pytest.raises(bs.BlockSwapError, match="tolerance"):
        parse_budget("800k", tolerance=1.5)
    # A latency without its metric names the form that works (a practitioner types --budget 5ms).
    with pytest.raises(bs.BlockSwapError, match=r"'5ms'.*latency=5ms"):
        parse_budget("5ms")
    assert parse_budget("latency=5ms").target == pytest.approx(0.005)
