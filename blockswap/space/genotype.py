"""Genotypes: a network name plus one block type per swappable block (paper Sec. 4).

Three forms, all round-tripping to the same `Genotype` value:

* text: ``"S,G(4),B(2),..."`` (the authors' names ``Conv,DConvA4,ConvB2`` are accepted too);
* a versioned JSON file (``{"format": "blockswap.genotype", "version": 1, ...}``);
* the reference CSV files published with the authors' code (column ``convs``, a list literal).

A `Genotype` is checked when it is made: the right number of blocks for its network, and every
block type able to split the channels at its position.
"""

from __future__ import annotations

import ast
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import BlockSwapError
from ..files import FileFormat, atomic_write_json
from .blocks import BlockType, parse_block, split_types
from .networks import NetworkSpec, network_spec

GENOTYPE_FILE = FileFormat("blockswap.genotype", 1, "BlockSwap genotype")


NetworkRef = "str | NetworkSpec"  # a network name ("wrn-40-2") or its resolved spec


@dataclass(frozen=True, eq=False, init=False)
class Genotype:
    """A student architecture: its network's `spec` and its blocks' types in order.

    Made from a network name (``Genotype("wrn-40-2", blocks)``, resolved once, here) or from a
    `NetworkSpec` (kept as given: a space registered at run time travels with its genotypes to
    worker processes). `network` is the network's name; two genotypes are equal when their
    network names and blocks are.
    """

    spec: NetworkSpec
    blocks: tuple[BlockType, ...]

    def __init__(self, network: NetworkRef, blocks: Iterable[str | BlockType]) -> None:
        # `network` as before this value held its spec: API users construct from a name.
        object.__setattr__(self, "spec", network_spec(network))
        object.__setattr__(self, "blocks", tuple(parse_block(b) for b in blocks))
        self.check()

    @property
    def network(self) -> str:
        """The network's name, e.g. ``wrn-40-2`` (what the JSON form stores)."""
        return self.spec.name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Genotype):
            return NotImplemented
        return (self.network, self.blocks) == (other.network, other.blocks)

    def __hash__(self) -> int:
        return hash((self.network, self.blocks))

    def __repr__(self) -> str:
        return f"Genotype({self.network!r}, {self.text!r})"

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def standard(cls, network: NetworkRef) -> "Genotype":
        """The unswapped network: the network's own blocks (S for WRNs and the paper's ResNets)."""
        spec = network_spec(network)
        return cls(spec, tuple(spec.standard) if spec.standard else (BlockType("S"),) * spec.num_blocks)

    @classmethod
    def uniform(cls, network: NetworkRef, block: str | BlockType) -> "Genotype":
        """A single-blocktype network (Moonshine): every block of type `block`."""
        spec = network_spec(network)
        return cls(spec, (parse_block(block),) * spec.num_blocks)

    @classmethod
    def from_text(cls, text: str, network: NetworkRef) -> "Genotype":
        """Parse ``"S,G(4),BG(2,M/8),..."`` (commas inside parentheses are kept)."""
        names = split_types(text, "genotype")
        if not names:
            raise BlockSwapError("empty genotype: give one block type per block, e.g. 'S,G(4),B(2)'")
        return cls(network, tuple(parse_block(n) for n in names))

    # ---- forms -------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    @property
    def text(self) -> str:
        return ",".join(self.names)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {**GENOTYPE_FILE.stamp(), "network": self.network, "blocks": self.names}

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype", network: NetworkRef | None = None) -> "Genotype":
        """Read the JSON form; its network name is resolved here, once, or must be the name of
        `network` (a spec given by the caller, e.g. one registered at run time)."""
        GENOTYPE_FILE.check(data, source)
        blocks = data.get("blocks")
        if not isinstance(data.get("network"), str) or not isinstance(blocks, list):
            raise BlockSwapError(f"{source}: a genotype needs \"network\" (string) and \"blocks\" (list)")
        if network is None:
            return cls(data["network"], tuple(parse_block(b) for b in blocks))
        spec = network_spec(network)
        # Names compare as the registry matches them (case-insensitive), without a look-up: a
        # worker process may hold the spec of a network registered only in the main process.
        if data["network"].strip().lower() != spec.name.lower():
            raise BlockSwapError(f"genotype file {source!r} is for {data['network']}, not {spec.name}")
        return cls(spec, tuple(parse_block(b) for b in blocks))
        return cls(spec, tuple(parse_block(b) for b in blocks))

    def save(self, path: str | Path, **meta: Any) -> Path:
        """Write the versioned JSON form atomically; `meta` (score, cost, ...) is kept alongside."""
        data = self.to_dict()
        if meta:
            data["meta"] = meta
        return atomic_write_json(path, data)

    # ---- checks ------------------------------------------------------------------------
    def check(self, spec: NetworkSpec | None = None) -> None:
        """Raise unless the blocks fit `spec` (default: the genotype's own network)."""
        spec = spec or self.spec
        if len(self.blocks) != spec.num_blocks:
            raise BlockSwapError(
                f"genotype has {len(self.blocks)} blocks but {spec.name} has {spec.num_blocks} "
                f"swappable blocks (stages of {', '.join(map(str, spec.depths))})")
        for slot, block in zip(spec.slots(), self.blocks):
            problem = block.problem(slot.c_in, slot.c_out)
            if problem:
                raise BlockSwapError(
                    f"block {slot.index} ({block}) of {spec.name} cannot map {slot.c_in}->{slot.c_out} "
                    f"channels: {problem}")


def read_reference_csv(path: str | Path, network: NetworkRef, row: int = 0) -> Genotype:
    """Read a genotype CSV of the authors' code (``,index,convs,fisher``; convs a list literal)."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BlockSwapError(f"cannot read genotype CSV {str(path)!r}: {exc}") from None
    if not rows or "convs" not in rows[0]:
        raise BlockSwapError(f"{str(path)!r}: expected a CSV with a 'convs' column and at least one row")
    if not 0 <= row < len(rows):
        raise BlockSwapError(f"{str(path)!r}: row {row} requested but the file has {len(rows)} rows")
    text = rows[row]["convs"]
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise BlockSwapError(f"{str(path)!r}: the 'convs' entry {text[:60]!r} is not a list of block names") from None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise BlockSwapError(f"{str(path)!r}: the 'convs' entry must be a list of block names")
    return Genotype(network, tuple(parse_block(n) for n in names))


REFERENCE_DIR = Path(__file__).parent.parent / "reference"
# Network of each reference genotype shipped from the authors' code (reference/NOTICE.md).
REFERENCE_NETWORKS = {"bs_imagenet_": "resnet34", "bs": "wrn-40-2"}


def reference_names() -> list[str]:
    """Names of the shipped reference genotypes: bs150k ... bs1.6m, bs_imagenet_1, bs_imagenet_2."""
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.csv"))


def reference_genotype(name: str) -> Genotype:
    """A genotype the paper reports, e.g. ``reference_genotype("bs800k")`` (WRN-40-2, 811.4K)."""
    path = REFERENCE_DIR / f"{name}.csv"
    if not path.is_file():
        raise BlockSwapError(f"unknown reference genotype {name!r}; valid names: {', '.join(reference_names())}")
    network = next(net for prefix, net in REFERENCE_NETWORKS.items() if name.startswith(prefix))
    return read_reference_csv(path, network)


def load_genotype(source: str | Path, network: NetworkRef | None = None) -> Genotype:
    """A genotype from a JSON file, a reference CSV, ``reference:NAME``, ``uniform:TYPE`` (every
    block TYPE, e.g. ``uniform:G(N)``), or inline text.

    `network` (a name or a `NetworkSpec`) is required for CSV and text (they do not name it)
    and, when given with a JSON file or a reference name, must match its network.
    """
    text = str(source).strip()
    spec = None if network is None else network_spec(network)  # resolved once
    if text.startswith("uniform:"):  # every block one type: a single-blocktype network (Moonshine)
        return Genotype.uniform(_need(spec, text), text.partition(":")[2])
    if text.startswith("reference:"):
        return _matching(reference_genotype(text.partition(":")[2]), spec, f"reference genotype {text!r}")
    path = Path(text)
    looks_like_file = path.suffix.lower() in (".json", ".csv") or path.is_file()
    if looks_like_file:
        if not path.is_file():
            raise BlockSwapError(f"genotype file {text!r} does not exist")
        if path.suffix.lower() == ".csv":
            return read_reference_csv(path, _need(spec, text))
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BlockSwapError(f"cannot read genotype file {text!r}: {exc}") from None
        return Genotype.from_dict(data, text, spec)
    return Genotype.from_text(text, _need(spec, "inline genotype"))


def _need(spec: NetworkSpec | None, what: str) -> NetworkSpec:
    if spec is None:
        raise BlockSwapError(f"{what} does not name its network; give the model (e.g. --model wrn-40-2)")
    return spec


def _matching(geno: Genotype, spec: NetworkSpec | None, what: str) -> Genotype:
    if spec is not None and spec.name != geno.network:
        raise BlockSwapError(f"{what} is for {geno.network}, not {spec.name}")
    return geno


def as_genotype(obj: "Genotype | str | Path | Iterable[str | BlockType] | None", network: NetworkRef) -> Genotype:
    """Coerce a Genotype, a file path / text, or a list of block types to a Genotype of `network`
    (a name or a `NetworkSpec`); None is the network's standard genotype."""
    spec = network_spec(network)
    if obj is None:
        return Genotype.standard(spec)
    if isinstance(obj, Genotype):
        return _matching(obj, spec, "genotype")
    if isinstance(obj, (str, Path)):
        return load_genotype(obj, spec)
    return Genotype(spec, tuple(parse_block(b) for b in obj))
