"""The block zoo as values: block types, their text forms, and the layers of their bodies.

Every block is pre-activation (Zagoruyko & Komodakis, 2016; paper Sec. 3.1)::

    o = ReLU(BN(x));  out = probe(body(o)) + (x if c_in == c_out and stride 1 else conv1x1_stride(o))

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

A variant is a parameter, not a class: `BlockType` is a small frozen value, and a strict registry
maps each *family* (S, G, B, BG) to a `Family`: how its arguments parse, which channel counts it
can split, and the `layers` plan of its body. Costs (`space.costs`) walk that plan; the modules
(`nn.block`) are built from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..errors import BlockSwapError, choices
from ..registry import Registry, did_you_mean
from .complexity import Act, Conv, Norm, Plan

KERNEL = 3  # spatial kernel size of every block's spatial convs (paper Sec. 3.1, k = 3)


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

    family: str  # "S", "G", "B", "BG" (or "GL", "GS": `space.structured`): a key of the family registry
    bottleneck: int = 1  # b: bottleneck factor, m = c_out / b (B and BG only)
    groups: Groups = Groups()  # grouping of the 3x3 convs (G, BG, GL and GS)
    pointwise: int = 1  # structured 1x1 maps: rank divisor (GL) or pointwise groups (GS)

    @property
    def name(self) -> str:
        """Canonical paper notation: S, G(4), G(N/4), G(N), B(2), BG(2,4), BG(2,M/8)."""
        return family(self.family).name(self)

    def __str__(self) -> str:
        return self.name

    def problem(self, c_in: int, c_out: int) -> str | None:
        """Why this type cannot be built from c_in to c_out channels, or None if it can."""
        return family(self.family).problem(self, c_in, c_out)

    def layers(self, c_in: int, c_out: int, stride: int) -> Plan:
        """The body's layers (after the block's BN-ReLU, before the probe), in order."""
        return family(self.family).layers(self, c_in, c_out, stride)


@dataclass(frozen=True)
class Family:
    """What the registry knows about one block family (all pure functions of a `BlockType`)."""

    key: str
    parse: Callable[[list[str], str], BlockType]  # (arguments, full text) -> type
    name: Callable[[BlockType], str]
    layers: Callable[[BlockType, int, int, int], Plan]  # (type, c_in, c_out, stride) -> plan
    problem: Callable[[BlockType, int, int], "str | None"] = lambda block, c_in, c_out: None


# Keys are case-sensitive: "B" and "BG" are families, "b" is a typo to be pointed out.
_FAMILIES: Registry[Family] = Registry("block family", "families", case_sensitive=True)


def register_family(fam: Family) -> Family:
    """Add a block family to the zoo (a new key only)."""
    return _FAMILIES.add(fam.key, fam)


def families() -> list[str]:
    """Keys of the registered block families."""
    return _FAMILIES.names()


def family(key: str) -> Family:
    return _FAMILIES[key]


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------

_INT = re.compile(r"^[1-9][0-9]*$")


def _int(text: str, what: str, full: str) -> int:
    if not _INT.match(text):
        raise BlockSwapError(f"bad {what} {text!r} in block type {full!r}: expected a positive integer")
    return int(text)


def _groups(text: str, letter: str, full: str) -> Groups:
    """'4' -> 4 groups; 'N/4' -> groups of 4 channels; 'N' -> depthwise (letter N or M)."""
    if text == letter:
        return Groups(1, True)
    if text.startswith(letter + "/"):
        return Groups(_int(text[2:], "channels per group", full), True)
    if text[:1].isalpha():
        raise BlockSwapError(f"bad group count {text!r} in block type {full!r}: "
                             f"expected an integer, {letter}, or {letter}/<integer>")
    return Groups(_int(text, "group count", full))


def _arity(args: list[str], n: int, form: str, full: str) -> None:
    if len(args) != n or any(a == "" for a in args):
        raise BlockSwapError(f"block type {full!r}: expected the form {form}")


# --------------------------------------------------------------------------------------------
# The four families of the paper (Sec. 3.1, Appendix A)
# --------------------------------------------------------------------------------------------


def _parse_s(args: list[str], full: str) -> BlockType:
    if args:
        raise BlockSwapError(f"block type {full!r}: S takes no arguments, write S")
    return BlockType("S")


def _layers_s(block: BlockType, c_in: int, c_out: int, stride: int) -> Plan:
    return (("conv1", Conv(c_in, c_out, KERNEL, stride)), ("bn", Norm(c_out)), ("relu", Act()),
            ("conv2", Conv(c_out, c_out, KERNEL)))


def _layers_g(block: BlockType, c_in: int, c_out: int, stride: int) -> Plan:
    # Unit 1 splits the c_in input channels, unit 2 the c_out channels; the block's BN-ReLU
    # sits between the units (a G unit replaces each conv of the standard block).
    g_in, g_out = block.groups.resolve(c_in), block.groups.resolve(c_out)
    return (("gconv1", Conv(c_in, c_in, KERNEL, stride, g_in)), ("bn1", Norm(c_in)), ("relu1", Act()),
            ("pconv1", Conv(c_in, c_out, 1)), ("bn", Norm(c_out)), ("relu", Act()),
            ("gconv2", Conv(c_out, c_out, KERNEL, 1, g_out)), ("bn2", Norm(c_out)), ("relu2", Act()),
            ("pconv2", Conv(c_out, c_out, 1)))


def _problem_g(block: BlockType, c_in: int, c_out: int) -> str | None:
    return block.groups.problem(c_in, "first grouped conv") or block.groups.problem(c_out, "second grouped conv")


def _layers_b(block: BlockType, c_in: int, c_out: int, stride: int) -> Plan:
    # The stride sits on the 3x3 conv (as the authors' bottleneck).
    m = c_out // block.bottleneck
    return (("down", Conv(c_in, m, 1)), ("bn1", Norm(m)), ("relu1", Act()),
            ("conv", Conv(m, m, KERNEL, stride, block.groups.resolve(m))), ("bn2", Norm(m)),
            ("relu2", Act()), ("up", Conv(m, c_out, 1)))


def _problem_b(block: BlockType, c_in: int, c_out: int) -> str | None:
    if c_out % block.bottleneck != 0:
        return f"bottleneck factor {block.bottleneck} does not divide the {c_out} output channels"
    return block.groups.problem(c_out // block.bottleneck, "bottleneck (M)")


def _parse_g(args: list[str], full: str) -> BlockType:
    _arity(args, 1, "G(<g>), G(N/<x>) or G(N)", full)
    return BlockType("G", groups=_groups(args[0], "N", full))


def _parse_b(args: list[str], full: str) -> BlockType:
    _arity(args, 1, "B(<b>)", full)
    return BlockType("B", bottleneck=_int(args[0], "bottleneck factor", full))


def _parse_bg(args: list[str], full: str) -> BlockType:
    _arity(args, 2, "BG(<b>,<g>), BG(<b>,M/<x>) or BG(<b>,M)", full)
    return BlockType("BG", _int(args[0], "bottleneck factor", full), _groups(args[1], "M", full))


register_family(Family("S", _parse_s, lambda b: "S", _layers_s))
register_family(Family("G", _parse_g, lambda b: f"G({b.groups.text('N')})", _layers_g, _problem_g))
register_family(Family("B", _parse_b, lambda b: f"B({b.bottleneck})", _layers_b, _problem_b))
register_family(Family("BG", _parse_bg, lambda b: f"BG({b.bottleneck},{b.groups.text('M')})",
                       _layers_b, _problem_b))


# --------------------------------------------------------------------------------------------
# Text forms
# --------------------------------------------------------------------------------------------

_PAPER = re.compile(r"^(?P<family>[A-Za-z]+)(?:\((?P<args>[^()]*)\))?$")
# Names used by the authors' code and the reference genotype CSVs (column `convs`).
_AUTHORS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], BlockType]]] = [
    (re.compile(r"^Conv$"), lambda m: BlockType("S")),
    (re.compile(r"^DConv$"), lambda m: BlockType("G", groups=Groups(1, True))),
    (re.compile(r"^DConvA(\d+)$"), lambda m: BlockType("G", groups=Groups(int(m[1])))),
    (re.compile(r"^DConvG(\d+)$"), lambda m: BlockType("G", groups=Groups(int(m[1]), True))),
    (re.compile(r"^ConvB(\d+)$"), lambda m: BlockType("B", bottleneck=int(m[1]))),
    (re.compile(r"^A(\d+)B(\d+)$"), lambda m: BlockType("BG", int(m[2]), Groups(int(m[1])))),
    (re.compile(r"^G(\d+)B(\d+)$"), lambda m: BlockType("BG", int(m[2]), Groups(int(m[1]), True))),
]


def parse_block(text: "str | BlockType") -> BlockType:
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
            if block.bottleneck < 1 or block.groups.count < 1:
                raise BlockSwapError(f"block type {full!r}: counts must be >= 1")
            return block
    match = _PAPER.match(full)
    if not match or match["family"] not in _FAMILIES:
        raise BlockSwapError(
            f"unknown block type {full!r}; valid families: {choices(_FAMILIES)} "
            f"(e.g. {choices(DEFAULT_CANDIDATE_NAMES, limit=8)}), "
            "or the authors' names Conv, DConv, DConvA<g>, DConvG<x>, ConvB<b>, A<g>B<b>, G<x>B<b>"
            f"{did_you_mean(full, [*DEFAULT_CANDIDATE_NAMES, *BOTTLENECK_CANDIDATE_NAMES])}")
    args = [] if match["args"] is None else match["args"].split(",")
    return _FAMILIES[match["family"]].parse(args, full)


def split_types(text: str, what: str = "block list") -> list[str]:
    """Split 'S,BG(2,M/4),G(4)' on the commas outside parentheses; blank text gives [].

    An empty entry ('S,,G(4)', a leading or trailing comma, one of only spaces) is refused, not
    dropped: the list would silently lose a position. `what` names the list in messages.
    """
    if not text.strip():
        return []
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
        raise BlockSwapError(f"unbalanced parentheses in {what} {text!r}")
    for position, part in enumerate(parts, start=1):
        if not part:
            raise BlockSwapError(f"{what} {text!r} has an empty entry at position {position} of "
                                 f"{len(parts)}; separate block types with single commas, e.g. 'S,G(4),B(2)'")
    return parts


# --------------------------------------------------------------------------------------------
# Candidate sets
# --------------------------------------------------------------------------------------------

# The 23 candidate types of the authors' CIFAR search (paper Sec. 4, Appendix A): S so that a
# block may keep its capacity, then grouped+pointwise, bottleneck and grouped bottleneck types.
DEFAULT_CANDIDATE_NAMES: tuple[str, ...] = (
    "S",
    "G(2)", "G(4)", "G(8)", "G(16)", "G(N/16)", "G(N/8)", "G(N/4)", "G(N/2)", "G(N)",
    "B(2)", "B(4)",
    "BG(2,2)", "BG(2,4)", "BG(2,8)", "BG(2,16)",
    "BG(2,M/2)", "BG(2,M/4)", "BG(2,M/8)", "BG(2,M/16)",
    "BG(4,M/2)", "BG(4,M/4)", "BG(4,M/8)",
)


# For bottleneck networks (a torchvision ResNet-50's B(4) blocks; `nn.discover`): the paper's
# substitutions made the same way for a 1x1-3x3-1x1 block: thinner bottlenecks, the 3x3 conv
# grouped or depthwise, and grouped+pointwise blocks without a bottleneck.
BOTTLENECK_CANDIDATE_NAMES: tuple[str, ...] = (
    "B(4)", "B(8)", "B(16)",
    "BG(4,2)", "BG(4,4)", "BG(4,8)", "BG(4,M/16)", "BG(4,M/8)", "BG(4,M/4)", "BG(4,M)",
    "BG(8,2)", "BG(8,4)", "BG(8,M/8)", "BG(8,M)",
    "G(N/16)", "G(N)",
)

# Named candidate sets for --candidates ("paper", "structured", "paper+structured").
_CANDIDATE_SETS: Registry[tuple[str, ...]] = Registry("candidate set", case_sensitive=True)
_CANDIDATE_SETS.add("paper", DEFAULT_CANDIDATE_NAMES)
_CANDIDATE_SETS.add("bottleneck", BOTTLENECK_CANDIDATE_NAMES)


def register_candidate_set(name: str, names: tuple[str, ...]) -> None:
    _CANDIDATE_SETS.add(name, tuple(names))


def candidate_sets() -> dict[str, tuple[str, ...]]:
    return dict(_CANDIDATE_SETS.items())


def default_candidates() -> list[BlockType]:
    """The 23 block types of the paper's CIFAR search, as `BlockType` values."""
    return [parse_block(name) for name in DEFAULT_CANDIDATE_NAMES]


def parse_candidates(spec: "str | list | tuple | None") -> list[BlockType]:
    """A candidate set from a comma-separated string, a list, or named sets joined by '+'
    ("paper+structured"); None gives the paper's set.

    Splits on commas outside parentheses, so "S,BG(2,M/4),G(4)" has three entries.
    """
    if spec is None:
        return default_candidates()
    if isinstance(spec, str):
        names = [n.strip() for n in spec.split("+")]
        # A bare word near a set's name ('papr') is a misspelt set, not a block type.
        word = len(names) == 1 and "(" not in spec and "," not in spec
        if word and all(n in _CANDIDATE_SETS for n in names) or "+" in spec \
                or word and names[0] not in _FAMILIES and _CANDIDATE_SETS.suggest(names[0]):
            unknown = [n for n in names if n not in _CANDIDATE_SETS]
            if unknown:
                raise BlockSwapError(f"unknown candidate set {unknown[0]!r}; valid sets: {choices(_CANDIDATE_SETS)} "
                                     "(join them with '+', e.g. paper+structured), or list block types 'S,G(4),...'"
                                     f"{_CANDIDATE_SETS.suggest(unknown[0])}")
            spec = [b for n in names for b in _CANDIDATE_SETS[n]]
        else:
            spec = split_types(spec, "candidate set")
    blocks = [parse_block(s) for s in spec]
    if not blocks:
        raise BlockSwapError("the candidate set is empty; give at least one block type")
    seen: set[str] = set()
    for b in blocks:
        if b.name in seen:
            raise BlockSwapError(f"block type {b.name} appears twice in the candidate set")
        seen.add(b.name)
    return blocks
