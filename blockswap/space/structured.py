"""Structured pointwise block families (the authors' companion work, Gray et al. 2019, "Separable
layers enable structured efficient linear substitutions": in a grouped+pointwise block the 1x1
convolutions hold most parameters, so replace their dense linear maps with structured ones).

Both families keep the G(g) block of the paper (Sec. 3.1): two units of grouped 3x3 conv ->
BN -> ReLU -> pointwise map, with the block's BN-ReLU between the units; only each pointwise map
(c_a -> c_b) changes:

====  ========================================================================================
GL    low rank: conv1x1(c_a -> k) -> conv1x1(k -> c_b), rank k = c_b / r, no nonlinearity
      between (a rank-k factorisation of the 1x1 map). ``GL(g,r)``, g as in G(g).
GS    grouped pointwise with channel shuffle (ShuffleNet): conv1x1(c_a -> c_b, p groups) ->
      shuffle(p). ``GS(g,p)``.
====  ========================================================================================

ACDC (a product of diagonal and DCT layers) is not here: its cost in MACs depends on how the DCT
is computed, so it has no exact analytic count to match a built module.

Registered on import of `blockswap.space` (the package imports this module).
"""

from __future__ import annotations

from .blocks import (KERNEL, BlockType, Family, _arity, _groups, _int, register_candidate_set,
                     register_family)
from .complexity import Act, Conv, Norm, Plan, Shuffle


def _pointwise_low_rank(name: str, c_a: int, c_b: int, r: int) -> Plan:
    k = c_b // r
    return ((f"{name}_u", Conv(c_a, k, 1)), (f"{name}_v", Conv(k, c_b, 1)))


def _pointwise_shuffle(name: str, c_a: int, c_b: int, p: int) -> Plan:
    return ((name, Conv(c_a, c_b, 1, 1, p)), (f"{name}_shuffle", Shuffle(p)))


def _units(block: BlockType, c_in: int, c_out: int, stride: int, pointwise) -> Plan:
    g_in, g_out = block.groups.resolve(c_in), block.groups.resolve(c_out)
    return (("gconv1", Conv(c_in, c_in, KERNEL, stride, g_in)), ("bn1", Norm(c_in)), ("relu1", Act()),
            *pointwise("pconv1", c_in, c_out, block.pointwise), ("bn", Norm(c_out)), ("relu", Act()),
            ("gconv2", Conv(c_out, c_out, KERNEL, 1, g_out)), ("bn2", Norm(c_out)), ("relu2", Act()),
            *pointwise("pconv2", c_out, c_out, block.pointwise))


def _grouping_problem(block: BlockType, c_in: int, c_out: int) -> str | None:
    return block.groups.problem(c_in, "first grouped conv") or block.groups.problem(c_out, "second grouped conv")


def _problem_gl(block: BlockType, c_in: int, c_out: int) -> str | None:
    if c_out % block.pointwise != 0:
        return f"rank divisor {block.pointwise} does not divide the {c_out} output channels"
    return _grouping_problem(block, c_in, c_out)


def _problem_gs(block: BlockType, c_in: int, c_out: int) -> str | None:
    for c in (c_in, c_out):
        if c % block.pointwise != 0:
            return f"{block.pointwise} pointwise groups do not divide the {c} channels"
    return _grouping_problem(block, c_in, c_out)


def _parser(key: str, what: str):
    def parse(args: list[str], full: str) -> BlockType:
        _arity(args, 2, f"{key}(<g>,<{what}>) or {key}(N/<x>,<{what}>)", full)
        return BlockType(key, groups=_groups(args[0], "N", full), pointwise=_int(args[1], what, full))

    return parse


register_family(Family("GL", _parser("GL", "rank divisor"), lambda b: f"GL({b.groups.text('N')},{b.pointwise})",
                       lambda b, i, o, s: _units(b, i, o, s, _pointwise_low_rank), _problem_gl))
register_family(Family("GS", _parser("GS", "pointwise groups"), lambda b: f"GS({b.groups.text('N')},{b.pointwise})",
                       lambda b, i, o, s: _units(b, i, o, s, _pointwise_shuffle), _problem_gs))

# Extra candidates for a search: depthwise and groups-of-8 3x3 convs with each structured map
# at two strengths (rank c/2 and c/4; 2 and 4 pointwise groups). `--candidates paper+structured`.
STRUCTURED_CANDIDATE_NAMES: tuple[str, ...] = (
    "GL(N,2)", "GL(N,4)", "GL(N/8,2)", "GL(N/8,4)",
    "GS(N,2)", "GS(N,4)", "GS(N/8,2)", "GS(N/8,4)",
)
register_candidate_set("structured", STRUCTURED_CANDIDATE_NAMES)
