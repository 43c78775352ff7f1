"""The block zoo: names, the strict registry, and the structure of paper Sec. 3.1 and Appendix A."""

import pytest
import torch
from torch import nn

import blockswap as bs
from blockswap.nn import Block
from blockswap.space import Family


def test_default_candidate_set_is_the_papers_23_types():
    names = [b.name for b in bs.default_candidates()]
    assert len(names) == len(set(names)) == 23
    assert names[0] == "S" and "G(N)" in names and "BG(4,M/8)" in names


@pytest.mark.parametrize("authors,paper", [
    ("Conv", "S"), ("DConvA4", "G(4)"), ("DConvG16", "G(N/16)"), ("DConv", "G(N)"),
    ("ConvB2", "B(2)"), ("A16B2", "BG(2,16)"), ("G8B2", "BG(2,M/8)"), ("G2B4", "BG(4,M/2)"),
])
def test_authors_names_map_to_paper_notation(authors, paper):
    # The authors' names (docs/paper.md): Conv=S, DConvA<g>=G(g), DConvG<x>=G(N/x), DConv=G(N), ConvB<b>=B(b),
    # A<g>B<b>=BG(b,g), G<x>B<b>=BG(b,M/x).
    assert bs.parse_block(authors) == bs.parse_block(paper)
    assert bs.parse_block(authors).name == paper


@pytest.mark.parametrize("text", ["S", "G(4)", "G(N/4)", "G(N)", "B(2)", "BG(2,4)", "BG(2,M/8)", "BG(4,M)"])
def test_paper_notation_round_trips(text):
    assert bs.parse_block(text).name == text
    assert bs.parse_block(f" {text.replace(',', ', ')} ").name == text


@pytest.mark.parametrize("text,fragment", [
    ("X(2)", "valid families: S, G, B, BG"),
    ("Conv3", "unknown block type"),
    ("G(0)", "positive integer"),
    ("G(M/4)", "N/<integer>"),
    ("BG(2)", "BG(<b>,<g>)"),
    ("B(two)", "positive integer"),
    ("S(1)", "takes no arguments"),
    ("G(N/-2)", "positive integer"),
])
def test_bad_block_names_fail_with_the_valid_choices(text, fragment):
    with pytest.raises(bs.BlockSwapError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        bs.parse_block(text)


def test_registry_is_strict():
    assert bs.families() == ["S", "G", "B", "BG", "GL", "GS"]  # the paper's four, then space.structured
    with pytest.raises(bs.BlockSwapError, match="already registered"):
        bs.register_family(Family("G", lambda args, full: bs.BlockType("G"), lambda b: "G", lambda *a: ()))


def test_group_counts_that_do_not_divide_fail_before_torch():
    with pytest.raises(bs.BlockSwapError, match="3 groups do not divide the 16 channels"):
        Block("G(3)", 16, 16)
    with pytest.raises(bs.BlockSwapError, match="bottleneck"):
        Block("BG(4,M/8)", 16, 16)  # M = 4 channels cannot hold groups of 8


def convs(module):
    return [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.groups)
            for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name,expected", [
    # (c_in, c_out, k, stride, groups) of every conv, body first then shortcut, for 32 -> 64, stride 2
    ("S", [(32, 64, 3, 2, 1), (64, 64, 3, 1, 1), (32, 64, 1, 2, 1)]),
    ("G(4)", [(32, 32, 3, 2, 4), (32, 64, 1, 1, 1), (64, 64, 3, 1, 4), (64, 64, 1, 1, 1), (32, 64, 1, 2, 1)]),
    ("G(N/8)", [(32, 32, 3, 2, 4), (32, 64, 1, 1, 1), (64, 64, 3, 1, 8), (64, 64, 1, 1, 1), (32, 64, 1, 2, 1)]),
    ("B(4)", [(32, 16, 1, 1, 1), (16, 16, 3, 2, 1), (16, 64, 1, 1, 1), (32, 64, 1, 2, 1)]),
    ("BG(2,M/4)", [(32, 32, 1, 1, 1), (32, 32, 3, 2, 8), (32, 64, 1, 1, 1), (32, 64, 1, 2, 1)]),
])
def test_block_structure_follows_the_spec(name, expected):
    assert convs(Block(name, 32, 64, 2)) == expected


def test_probe_sees_the_residual_branch_before_the_add():
    torch.manual_seed(0)
    for c_in, c_out, stride in [(16, 16, 1), (16, 32, 2)]:
        block = Block("BG(2,4)", c_in, c_out, stride).eval()
        seen = []
        block.probe.register_forward_hook(lambda m, i, o: seen.append(o))
        x = torch.randn(2, c_in, 8, 8)
        out = block(x)
        # Recompute the shortcut by hand: identity, or 1x1 conv on the pre-activated input.
        pre = torch.relu(block.bn(x))
        shortcut = x if block.shortcut is None else torch.nn.functional.conv2d(
            pre, block.shortcut.weight, stride=stride)
        torch.testing.assert_close(seen[0], out - shortcut)
        torch.testing.assert_close(seen[0], block.body(pre))
