"""The block zoo: the standard residual block and its cheap substitutes (paper Sec. 3.1, App. A).

Every block is pre-activation (Zagoruyko & Komodakis, 2016)::

    o = ReLU(BN(x));  out = probe(body(o)) + (x if c_in == c_out else conv1x1_stride(o))

and the block *type* only chooses the body (c_in -> c_out, stride s on the first spatial conv):

====  =====================================================================================
S     conv3x3(c_in->c_out) -> BN -> ReLU -> conv3x3(c_out->c_out)
G(g)  two grouped+pointwise units, gconv3x3(c->c, g groups) -> BN -> ReLU -> conv1x1(c->c_out),
      with the block's BN -> ReLU between the units
B(b)  conv1x1(c_in->m) -> BN -> ReLU -> conv3x3(m->m) -> BN -> ReLU -> conv1x1(m->c_out), m = c_out/b
BG    as B(b) with the 3x3 conv split into g groups
====  =====================================================================================

A group count is absolute (``G(4)``: 4 groups) or relative to the channels it splits
(``G(N/4)``: groups of 4 channels, ``G(N)``: depthwise; for BG relative to the bottleneck width M).

A block variant is a parameter, not a class: `BlockType` is a small frozen value and the strict
registry maps each *family* string (S, G, B, BG) to one body class. Each body class carries its
analytic `complexity` next to `forward` (as pycls does); `tests/test_cost.py` checks it against
``sum(p.numel())`` and ``torch.utils.flop_counter`` for every type at every position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from .errors import BlockSwapError, choices

KERNEL = 3  # spatial kernel size of every block's spatial convs (paper Sec. 3.1, k = 3)


# --------------------------------------------------------------------------------------------
# Block types (values) and their text forms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Groups:
    """A group count: `count` groups (absolute), or groups of `count` channels (relative)."""

    count: int = 1
    relative: bool = False  # True: groups = channels // count ("N/count"); count=1 is depthwise

    def resolve(self, channels: int) -> int:
        """Number of groups when splitting `channels` channels."""
        return channels // self.count if self.relative else self.count

    def problem(self, channels: int, what: str) -> str | None:
        """Why this group count cannot split `channels` channels, or None if it can."""
        if channels % self.count != 0:
            unit = "channels per group" if self.relative else "groups"
            return f"{self.count} {unit} do not divide the {channels} channels of the {what}"
        return None

    def text(self, letter: str) -> str:
        if not self.relative:
            return str(self.count)
        return letter if self.count == 1 else f"{letter}/{self.count}"


@dataclass(frozen=True)
class BlockType:
    """One block type of the zoo, e.g. ``BlockType("BG", bottleneck=2, groups=Groups(8, True))``.

    Build one from text with `parse_block` ("BG(2,M/8)", or the authors' "G8B2").
    """

    family: str  # "S", "G", "B" or "BG": a key of the family registry
    bottleneck: int = 1  # b: bottleneck factor, m = c_out / b (B and BG only)
    groups: Groups = Groups()  # grouping of the 3x3 convs (G and BG only)

    @property
    def name(self) -> str:
        """Canonical paper notation: S, G(4), G(N/4), G(N), B(2), BG(2,4), BG(2,M/8)."""
        if self.family == "S":
            return "S"
        if self.family == "G":
            return f"G({self.groups.text('N')})"
        if self.family == "B":
            return f"B({self.bottleneck})"
        return f"BG({self.bottleneck},{self.groups.text('M')})"

    def __str__(self) -> str:
        return self.name

    def problem(self, c_in: int, c_out: int) -> str | None:
        """Why this type cannot be built from c_in to c_out channels, or None if it can."""
        return body_class(self.family).problem(self, c_in, c_out)


# Registry of body classes, keyed by family string (timm-style `register_model`).
_FAMILIES: dict[str, type[nn.Module]] = {}


def register_family(family: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make `cls` the body of block family `family` (a new name only)."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if family in _FAMILIES:
            raise BlockSwapError(f"block family {family!r} is already registered")
        _FAMILIES[family] = cls
        return cls

    return wrap


def families() -> list[str]:
    """Names of the registered block families."""
    return list(_FAMILIES)


def body_class(family: str) -> type[nn.Module]:
    try:
        return _FAMILIES[family]
    except KeyError:
        raise BlockSwapError(
            f"unknown block family {family!r}; valid families: {choices(_FAMILIES)}"
        ) from None


_PAPER = re.compile(r"^(?P<family>[A-Za-z]+)(?:\((?P<args>[^()]*)\))?$")
_INT = re.compile(r"^[1-9][0-9]*$")
# Names used by the authors' code and the reference genotype CSVs (SPEC, name table).
_AUTHORS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], BlockType]]] = [
    (re.compile(r"^Conv$"), lambda m: BlockType("S")),
    (re.compile(r"^DConv$"), lambda m: BlockType("G", groups=Groups(1, True))),
    (re.compile(r"^DConvA(\d+)$"), lambda m: BlockType("G", groups=Groups(int(m[1])))),
    (re.compile(r"^DConvG(\d+)$"), lambda m: BlockType("G", groups=Groups(int(m[1]), True))),
    (re.compile(r"^ConvB(\d+)$"), lambda m: BlockType("B", bottleneck=int(m[1]))),
    (re.compile(r"^A(\d+)B(\d+)$"), lambda m: BlockType("BG", int(m[2]), Groups(int(m[1])))),
    (re.compile(r"^G(\d+)B(\d+)$"), lambda m: BlockType("BG", int(m[2]), Groups(int(m[1]), True))),
]


def _parse_int(text: str, what: str, full: str) -> int:
    if not _INT.match(text):
        raise BlockSwapError(f"bad {what} {text!r} in block type {full!r}: expected a positive integer")
    return int(text)


def _parse_groups(text: str, letter: str, full: str) -> Groups:
    """'4' -> 4 groups; 'N/4' -> groups of 4 channels; 'N' -> depthwise (letter N or M)."""
    if text == letter:
        return Groups(1, True)
    if text.startswith(letter + "/"):
        return Groups(_parse_int(text[2:], "channels per group", full), True)
    if text[:1].isalpha():
        raise BlockSwapError(
            f"bad group count {text!r} in block type {full!r}: "
            f"expected an integer, {letter}, or {letter}/<integer>"
        )
    return Groups(_parse_int(text, "group count", full))


def parse_block(text: str) -> BlockType:
    """Parse a block type from paper notation (``BG(2,M/8)``) or the authors' names (``G8B2``).

    >>> parse_block("G(N/4)").name
    'G(N/4)'
    >>> parse_block("A16B2").name
    'BG(2,16)'
    """
    if isinstance(text, BlockType):
        return text
    full = str(text).strip().replace(" ", "")
    for pattern, make in _AUTHORS:
        match = pattern.match(full)
        if match:
            block = make(match)
            body_class(block.family).check_arguments(block, full)
            return block
    match = _PAPER.match(full)
    if not match or match["family"] not in _FAMILIES:
        raise BlockSwapError(
            f"unknown block type {full!r}; valid families: {choices(_FAMILIES)} "
            f"(e.g. {choices(DEFAULT_CANDIDATE_NAMES, limit=8)}), "
            "or the authors' names Conv, DConv, DConvA<g>, DConvG<x>, ConvB<b>, A<g>B<b>, G<x>B<b>"
        )
    cls = body_class(match["family"])
    args = [] if match["args"] is None else match["args"].split(",")
    block = cls.from_args(args, full)
    cls.check_arguments(block, full)
    return block


# --------------------------------------------------------------------------------------------
# Analytic complexity (pycls style): walk the layers as forward does, counting as we go
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Complexity:
    """Running analytic cost through a network: spatial size, parameters and MACs.

    Units: `params` counts learnable scalars (conv/linear weights and biases, BN affine
    weight and bias; BN running statistics are buffers, not parameters). `macs` counts
    multiply-accumulates of conv and linear layers for ONE input image (not FLOPs: one MAC is
    two FLOPs in `torch.utils.flop_counter`); BN, ReLU, pooling and additions are not counted.
    """

    h: int
    w: int
    params: int = 0
    macs: int = 0

    def conv(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1,
             padding: int | None = None, bias: bool = False) -> "Complexity":
        pad = k // 2 if padding is None else padding
        h = (self.h + 2 * pad - k) // stride + 1
        w = (self.w + 2 * pad - k) // stride + 1
        weights = c_out * (c_in // groups) * k * k
        params = weights + (c_out if bias else 0)
        return Complexity(h, w, self.params + params, self.macs + weights * h * w)

    def bn(self, channels: int) -> "Complexity":
        return replace(self, params=self.params + 2 * channels)

    def pool(self, k: int, stride: int, padding: int = 0) -> "Complexity":
        h = (self.h + 2 * padding - k) // stride + 1
        w = (self.w + 2 * padding - k) // stride + 1
        return replace(self, h=h, w=w)

    def linear(self, n_in: int, n_out: int) -> "Complexity":
        return replace(self, params=self.params + n_in * n_out + n_out, macs=self.macs + n_in * n_out)

    def __sub__(self, other: "Complexity") -> tuple[int, int]:
        """(params, macs) added between `other` and `self`."""
        return self.params - other.params, self.macs - other.macs


def conv(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """Bias-free 'same' conv: every conv of every block (the BN after it has the bias)."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False)


# --------------------------------------------------------------------------------------------
# Block bodies: one class per family, the variant is the BlockType parameter
# --------------------------------------------------------------------------------------------


class Body(nn.Module):
    """Base class of block bodies (the residual branch after the block's BN-ReLU)."""

    @classmethod
    def from_args(cls, args: list[str], full: str) -> BlockType:
        raise NotImplementedError

    @classmethod
    def check_arguments(cls, block: BlockType, full: str) -> None:
        """Channel-independent checks of a parsed type."""

    @classmethod
    def problem(cls, block: BlockType, c_in: int, c_out: int) -> str | None:
        return None

    @classmethod
    def complexity(cls, block: BlockType, c_in: int, c_out: int, stride: int,
                   cx: Complexity) -> Complexity:
        raise NotImplementedError


def _no_args(args: list[str], family: str, full: str) -> None:
    if args:
        raise BlockSwapError(f"block type {full!r}: {family} takes no arguments, write {family}")


def _arity(args: list[str], n: int, form: str, full: str) -> None:
    if len(args) != n or any(a == "" for a in args):
        raise BlockSwapError(f"block type {full!r}: expected the form {form}")


@register_family("S")
class StandardBody(Body):
    """S: the standard block, two full 3x3 convs."""

    def __init__(self, block: BlockType, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = conv(c_in, c_out, KERNEL, stride)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(c_out, c_out, KERNEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn(self.conv1(x))))

    @classmethod
    def from_args(cls, args: list[str], full: str) -> BlockType:
        _no_args(args, "S", full)
        return BlockType("S")

    @classmethod
    def complexity(cls, block, c_in, c_out, stride, cx):
        return cx.conv(c_in, c_out, KERNEL, stride).bn(c_out).conv(c_out, c_out, KERNEL)


@register_family("G")
class GroupedBody(Body):
    """G(g): each full conv becomes a grouped 3x3 conv followed by a pointwise conv.

    Unit 1 splits the c_in input channels, unit 2 the c_out channels; the BN-ReLU inside each
    unit follows the grouped conv, and the block's BN-ReLU sits between the two units (as in the
    authors' code, where a G unit replaces each conv of the standard block).
    """

    def __init__(self, block: BlockType, c_in: int, c_out: int, stride: int):
        super().__init__()
        g_in, g_out = block.groups.resolve(c_in), block.groups.resolve(c_out)
        self.gconv1 = conv(c_in, c_in, KERNEL, stride, groups=g_in)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pconv1 = conv(c_in, c_out, 1)
        self.bn = nn.BatchNorm2d(c_out)
        self.gconv2 = conv(c_out, c_out, KERNEL, groups=g_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pconv2 = conv(c_out, c_out, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pconv1(self.relu(self.bn1(self.gconv1(x))))
        x = self.relu(self.bn(x))
        return self.pconv2(self.relu(self.bn2(self.gconv2(x))))

    @classmethod
    def from_args(cls, args, full):
        _arity(args, 1, "G(<g>), G(N/<x>) or G(N)", full)
        return BlockType("G", groups=_parse_groups(args[0], "N", full))

    @classmethod
    def problem(cls, block, c_in, c_out):
        return block.groups.problem(c_in, "first grouped conv") or block.groups.problem(
            c_out, "second grouped conv")

    @classmethod
    def complexity(cls, block, c_in, c_out, stride, cx):
        g_in, g_out = block.groups.resolve(c_in), block.groups.resolve(c_out)
        cx = cx.conv(c_in, c_in, KERNEL, stride, g_in).bn(c_in).conv(c_in, c_out, 1)
        cx = cx.bn(c_out)
        return cx.conv(c_out, c_out, KERNEL, 1, g_out).bn(c_out).conv(c_out, c_out, 1)


class _BottleneckBody(Body):
    """B(b) and BG(b,g): pointwise down to m = c_out/b, (grouped) 3x3 at m, pointwise up."""

    def __init__(self, block: BlockType, c_in: int, c_out: int, stride: int):
        super().__init__()
        m = c_out // block.bottleneck
        self.down = conv(c_in, m, 1)
        self.bn1 = nn.BatchNorm2d(m)
        self.conv = conv(m, m, KERNEL, stride, groups=block.groups.resolve(m))
        self.bn2 = nn.BatchNorm2d(m)
        self.up = conv(m, c_out, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.down(x)))
        return self.up(self.relu(self.bn2(self.conv(x))))

    @classmethod
    def check_arguments(cls, block, full):
        if block.bottleneck < 1:
            raise BlockSwapError(f"block type {full!r}: bottleneck factor must be >= 1")

    @classmethod
    def problem(cls, block, c_in, c_out):
        if c_out % block.bottleneck != 0:
            return f"bottleneck factor {block.bottleneck} does not divide the {c_out} output channels"
        return block.groups.problem(c_out // block.bottleneck, "bottleneck (M)")

    @classmethod
    def complexity(cls, block, c_in, c_out, stride, cx):
        m = c_out // block.bottleneck
        cx = cx.conv(c_in, m, 1).bn(m)
        return cx.conv(m, m, KERNEL, stride, block.groups.resolve(m)).bn(m).conv(m, c_out, 1)


@register_family("B")
class BottleneckBody(_BottleneckBody):
    """B(b): bottleneck block with a full 3x3 conv."""

    @classmethod
    def from_args(cls, args, full):
        _arity(args, 1, "B(<b>)", full)
        return BlockType("B", bottleneck=_parse_int(args[0], "bottleneck factor", full))


@register_family("BG")
class GroupedBottleneckBody(_BottleneckBody):
    """BG(b,g): bottleneck block whose 3x3 conv is split into g groups (or groups of M/x)."""

    @classmethod
    def from_args(cls, args, full):
        _arity(args, 2, "BG(<b>,<g>), BG(<b>,M/<x>) or BG(<b>,M)", full)
        return BlockType("BG", _parse_int(args[0], "bottleneck factor", full),
                         _parse_groups(args[1], "M", full))


# --------------------------------------------------------------------------------------------
# The pre-activation block wrapping a body
# --------------------------------------------------------------------------------------------


class Block(nn.Module):
    """A swappable pre-activation residual block of type `block_type`.

    `probe` is an identity placed on the residual branch right after its last conv (before
    the residual add): the Fisher potential (paper Sec. 4) hooks it to read the activation
    and its gradient without touching the block's code.
    """

    def __init__(self, block_type: BlockType | str, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        block_type = parse_block(block_type)
        problem = block_type.problem(c_in, c_out)
        if problem:
            raise BlockSwapError(f"block type {block_type} cannot map {c_in}->{c_out} channels: {problem}")
        self.block_type = block_type
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.body = body_class(block_type.family)(block_type, c_in, c_out, stride)
        self.probe = nn.Identity()
        # Identity shortcut when shapes match (WRN convention), else a strided 1x1 conv on the
        # pre-activated input, without BN.
        self.shortcut = None if c_in == c_out and stride == 1 else conv(c_in, c_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.relu(self.bn(x))
        out = self.probe(self.body(o))
        return out + (x if self.shortcut is None else self.shortcut(o))

    @staticmethod
    def complexity(block_type: BlockType | str, c_in: int, c_out: int, stride: int,
                   cx: Complexity) -> Complexity:
        """Analytic cost of the block on top of `cx` (whose h, w is the input size)."""
        block_type = parse_block(block_type)
        out = body_class(block_type.family).complexity(block_type, c_in, c_out, stride, cx.bn(c_in))
        if not (c_in == c_out and stride == 1):
            params, macs = Complexity(cx.h, cx.w).conv(c_in, c_out, 1, stride) - Complexity(0, 0)
            out = replace(out, params=out.params + params, macs=out.macs + macs)
        return out

    def extra_repr(self) -> str:
        return f"{self.block_type}, {self.c_in}->{self.c_out}, stride={self.stride}"


# --------------------------------------------------------------------------------------------
# The default candidate set
# --------------------------------------------------------------------------------------------

# The 23 candidate types used by the authors' code for the CIFAR experiments (SPEC, Networks;
# paper Sec. 4): S so that a block may keep its capacity, then grouped+pointwise, bottleneck and
# grouped bottleneck blocks of increasing cheapness.
DEFAULT_CANDIDATE_NAMES: tuple[str, ...] = (
    "S",
    "G(2)", "G(4)", "G(8)", "G(16)", "G(N/16)", "G(N/8)", "G(N/4)", "G(N/2)", "G(N)",
    "B(2)", "B(4)",
    "BG(2,2)", "BG(2,4)", "BG(2,8)", "BG(2,16)",
    "BG(2,M/2)", "BG(2,M/4)", "BG(2,M/8)", "BG(2,M/16)",
    "BG(4,M/2)", "BG(4,M/4)", "BG(4,M/8)",
)


def default_candidates() -> list[BlockType]:
    """The 23 block types of the paper's CIFAR search, as `BlockType` values."""
    return [parse_block(name) for name in DEFAULT_CANDIDATE_NAMES]


def parse_candidates(spec: str | list[str] | tuple[str, ...] | None) -> list[BlockType]:
    """A candidate set from a comma-separated string or a list; None gives the default set.

    Splits on commas outside parentheses, so "S,BG(2,M/4),G(4)" has three entries.
    """
    if spec is None:
        return default_candidates()
    if isinstance(spec, str):
        spec = split_types(spec)
    blocks = [parse_block(s) for s in spec]
    if not blocks:
        raise BlockSwapError("the candidate set is empty; give at least one block type")
    seen: dict[str, None] = {}
    for b in blocks:
        if b.name in seen:
            raise BlockSwapError(f"block type {b.name} appears twice in the candidate set")
        seen[b.name] = None
    return blocks


def split_types(text: str) -> list[str]:
    """Split 'S,BG(2,M/4),G(4)' on the commas outside parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    if depth != 0:
        raise BlockSwapError(f"unbalanced parentheses in block list {text!r}")
    return [p for p in parts if p] if any(parts) else []
