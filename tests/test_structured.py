"""Structured pointwise blocks (GL: low rank, GS: grouped pointwise + channel shuffle): exact
analytic costs at every position, the maps they claim to be, and named candidate sets."""

from __future__ import annotations

import pytest
import torch

from helpers import check_block_costs
import blockswap as bs
from blockswap.errors import BlockSwapError
from blockswap.nn import Block
from blockswap.space import network_spec, parse_block, parse_candidates
from blockswap.space.blocks import BOTTLENECK_CANDIDATE_NAMES
from blockswap.space.structured import STRUCTURED_CANDIDATE_NAMES

EXTRA = ["GL(2,2)", "GL(N/4,8)", "GS(4,4)", "GS(N/16,8)"]  # beyond the named set: other arguments


@pytest.mark.parametrize("network", ["wrn-40-2", "wrn-16-1", "resnet34"])
def test_every_structured_type_at_every_position_matches_pytorch(network):
    checked = check_block_costs(network, (*STRUCTURED_CANDIDATE_NAMES, *EXTRA, *BOTTLENECK_CANDIDATE_NAMES))
    assert checked >= len(STRUCTURED_CANDIDATE_NAMES) * network_spec(network).num_blocks // 2


def test_low_rank_map_has_the_rank_it_claims():
    block = Block("GL(N,4)", 32, 32)
    u, v = block.body.pconv1_u.weight, block.body.pconv1_v.weight  # (k, c, 1, 1), (c, k, 1, 1)
    product = v[:, :, 0, 0].double() @ u[:, :, 0, 0].double()
    assert torch.linalg.matrix_rank(product) == 32 // 4


def test_shuffle_is_the_shufflenet_permutation():
    block = Block("GS(N/8,4)", 32, 32)
    shuffle = block.body.pconv1_shuffle
    x = torch.arange(32.0).view(1, 32, 1, 1)
    # channel j*(c/g) + i of the input goes to output i*g + j (Zhang et al. 2018), by a loop
    want = torch.empty(32)
    g, per = 4, 8
    for j in range(g):
        for i in range(per):
            want[i * g + j] = j * per + i
    assert torch.equal(shuffle(x).flatten(), want)


def test_named_candidate_sets():
    assert [b.name for b in parse_candidates("paper")] == list(bs.DEFAULT_CANDIDATE_NAMES)
    both = parse_candidates("paper+structured")
    assert [b.name for b in both] == [*bs.DEFAULT_CANDIDATE_NAMES, *STRUCTURED_CANDIDATE_NAMES]
    with pytest.raises(BlockSwapError, match="unknown candidate set 'shiny'.*paper, bottleneck, structured"):
        parse_candidates("paper+shiny")
    with pytest.raises(BlockSwapError, match="rank divisor"):
        parse_block("GL(N)")


def test_a_search_samples_structured_candidates_within_the_budget():
    import numpy as np

    from blockswap.search import sample_genotypes
    from blockswap.space import CostTable, parse_budget

    spec = network_spec("wrn-16-1")
    table = CostTable(spec, parse_candidates("paper+structured"))
    report = sample_genotypes(table, parse_budget("100k"), 200, np.random.default_rng(0))
    names = [[table.candidates[i].name for i in row] for row in report.choices]
    assert any(n.startswith(("GL", "GS")) for row in names for n in row)
    for row in names[:20]:  # the built network has the parameters the sampler accepted it for
        net = bs.build_model("wrn-16-1", ",".join(row), 10)
        assert abs(sum(p.numel() for p in net.parameters()) - 100_000) <= 2_500
