"""Latency lookup tables: measured seconds of each block type at each block position, so that
the sampler can use inference time as its budget (the paper's future work, Sec. 8) without
building a network.

The model is additive: a network's latency is predicted as stem + head + the sum of its blocks,
plus one constant `offset` per table, fitted by timing whole networks (`export.latency`). The
constant absorbs what a sum of isolated blocks misses (the cost of the hand-over between
blocks, caches warmed by the previous block); it cannot absorb effects that depend on the
particular neighbours of a block.

Positions whose block has the same input and output shape share measurements: a WRN-40-2 has
18 positions but 6 shapes (the first block of each stage, which changes the width or the
resolution, and the other blocks of each stage). Entries are keyed by that shape.

Times are seconds (float). The table is data from disk: every field is checked on reading.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from ..errors import BlockSwapError
from ..files import FileFormat, atomic_write_json
from .blocks import parse_block
from .networks import BlockSlot, NetworkSpec, network_spec

LATENCY_TABLE = FileFormat("blockswap.latency-table", 1, "BlockSwap latency table")


def shape_key(slot: BlockSlot) -> str:
    """The measurement key of a block position: input channels and side, output channels, stride."""
    return f"{slot.c_in}x{slot.h}->{slot.c_out}/s{slot.stride}"


@dataclass(frozen=True)
class LatencyTable:
    """Median seconds per block type and shape, for one network, batch size and machine."""

    network: str
    input_size: int
    batch_size: int
    device: str  # "cpu", "cuda:0"
    backend: str  # "torch"
    threads: int
    fixed: float  # seconds of the stem and the head together
    blocks: dict[str, dict[str, float]]  # shape key -> block type name -> seconds
    offset: float = 0.0  # seconds added to every prediction (fitted on whole networks)
    machine: dict[str, str] = field(default_factory=dict)  # CPU model, library versions
    validation: dict[str, Any] = field(default_factory=dict)  # figures of the last validation

    @property
    def spec(self) -> NetworkSpec:
        return network_spec(self.network)

    def keys(self) -> list[str]:
        """The shape key of each block position, in genotype order."""
        return [shape_key(s) for s in self.spec.slots(self.input_size)]

    def block_seconds(self, position: int, block: str) -> float:
        key = self.keys()[position]
        try:
            return self.blocks[key][block]
        except KeyError:
            have = sorted(self.blocks.get(key, {}))
            raise BlockSwapError(
                f"the latency table has no time for {block} at block {position} ({key}); it has "
                f"{', '.join(have) or 'nothing'} there: measure it with `blockswap latency-table "
                f"--candidates ... --resume`") from None

    def predict(self, blocks: Iterable[str]) -> float:
        """Predicted seconds of the network with these block type names (one per position)."""
        names = [getattr(b, "name", str(b)) for b in blocks]
        keys = self.keys()
        if len(names) != len(keys):
            raise BlockSwapError(f"{self.network} has {len(keys)} blocks, got a genotype of {len(names)}")
        return self.fixed + self.offset + sum(self.block_seconds(i, b) for i, b in enumerate(names))

    def with_offset(self, offset: float, validation: dict[str, Any]) -> "LatencyTable":
        table = replace(self, offset=float(offset), validation=validation)
        check_offset(table, "the fitted latency table")
        return table

    def fastest(self) -> float:
        """Predicted seconds of the fastest network the table can price: stem + head + offset +
        the quickest measured type at each position (positions with no entry count 0)."""
        return self.fixed + self.offset + sum(min(self.blocks.get(k, {}).values(), default=0.0) for k in self.keys())

    def to_dict(self) -> dict[str, Any]:
        return {**LATENCY_TABLE.stamp(), "network": self.network, "input_size": self.input_size,
                "batch_size": self.batch_size, "device": self.device, "backend": self.backend,
                "threads": self.threads, "units": "seconds", "fixed": self.fixed, "offset": self.offset,
                "blocks": self.blocks, "machine": self.machine, "validation": self.validation}

    def save(self, path: "str | Path") -> Path:
        return atomic_write_json(path, self.to_dict())

    def sha256(self) -> str:
        """Digest of the table's content (not of its path or file layout): a search records it,
        so that resuming with a changed table, even at the same path, is refused."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def check_offset(table: LatencyTable, where: str = "latency table") -> None:
    """Refuse a table whose (negative) offset makes some network's predicted latency zero or
    negative: a budget on it would report a reachable range such as -999ms..-999ms."""
    if table.offset < 0 and table.fastest() <= 0:
        raise BlockSwapError(
            f"{where}: offset {1e3 * table.offset:+.3f} ms predicts {1e3 * table.fastest():.3f} ms for the fastest "
            f"network (stem+head {1e3 * table.fixed:.3f} ms); a latency must be positive: re-measure the table "
            "(`blockswap latency-table ... --validate N`)")


def load_latency_table(path: "str | Path") -> LatencyTable:
    """A latency table from its JSON file, every field checked (the file is untrusted input)."""
    path = Path(path)
    where = repr(str(path))
    if path.is_dir():
        raise BlockSwapError(f"latency table {where} is a folder; give the table's JSON file")
    if not path.is_file():
        raise BlockSwapError(f"latency table {where} does not exist; make one with `blockswap latency-table`")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BlockSwapError(f"cannot read latency table {where}: {exc}") from None
    LATENCY_TABLE.check(data, where)
    return table_from_dict(data, where)


def table_from_dict(data: dict[str, Any], where: str = "latency table") -> LatencyTable:
    def need(key: str, kind: type, check=lambda v: True):
        value = data.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) or not check(value):
            raise BlockSwapError(f"{where}: field {key!r} is missing or invalid ({value!r})")
        return value

    seconds = lambda v: math.isfinite(v) and v >= 0  # noqa: E731
    blocks = need("blocks", dict)
    for key, row in blocks.items():
        if not isinstance(row, dict) or not all(isinstance(b, str) and isinstance(s, (int, float))
                                                and not isinstance(s, bool) and seconds(float(s))
                                                for b, s in row.items()):
            raise BlockSwapError(f"{where}: entry {key!r} must map block types to non-negative seconds")
        for name in row:  # lookups use canonical names: 'G(4)', never 'G4B1'
            try:
                canonical = parse_block(name).name
            except BlockSwapError as exc:
                raise BlockSwapError(f"{where}: entry {key!r}: {exc}") from None
            if canonical != name:
                raise BlockSwapError(f"{where}: block type {name!r} in entry {key!r} must be written {canonical!r}")
    for key in ("machine", "validation"):
        if not isinstance(data.get(key, {}), dict):
            raise BlockSwapError(f"{where}: field {key!r} must be an object, got {data.get(key)!r}")
    table = LatencyTable(
        network=network_spec(need("network", str)).name, input_size=need("input_size", int, lambda v: v >= 8),
        batch_size=need("batch_size", int, lambda v: v >= 1), device=need("device", str),
        backend=need("backend", str), threads=need("threads", int, lambda v: v >= 1),
        fixed=need("fixed", float, seconds), offset=need("offset", float, math.isfinite),
        blocks={k: {b: float(s) for b, s in row.items()} for k, row in blocks.items()},
        machine={str(k): str(v) for k, v in (data.get("machine") or {}).items()},
        validation=dict(data.get("validation") or {}))
    unknown = sorted(set(blocks) - set(table.keys()))
    if unknown:
        raise BlockSwapError(f"{where}: shape {unknown[0]!r} is not a block position of {table.network} "
                             f"at {table.input_size}px")
    check_offset(table, where)
    return table
