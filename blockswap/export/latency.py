"""Measuring latency tables (`space.latency`) and checking them against whole networks.

Protocol, the same for a block and for a network: eval mode, `torch.inference_mode`, a seeded
random input of the block's (or network's) input shape, `warmup` untimed calls, then the median
of `repeats` timed calls (`speed.median_seconds`). Each measured entry is written to the table
file at once (atomically), so an interrupted measurement resumes without timing anything twice.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import BlockSwapError
from ..files import versions
from ..nn.block import Block
from ..nn.network import build_model
from ..space.blocks import BlockType, parse_block
from ..space.latency import LatencyTable, load_latency_table, shape_key
from ..space.networks import network_spec
from .timing import median_seconds


@dataclass(frozen=True)
class Protocol:
    """How every entry is timed."""

    batch_size: int = 1  # images per call (latency at batch 1: what a device serving one request sees)
    warmup: int = 5  # untimed calls before timing
    repeats: int = 20  # timed calls; the median is kept

    def __post_init__(self) -> None:
        for name in ("batch_size", "warmup", "repeats"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise BlockSwapError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


def time_module(module: nn.Module, shape: Sequence[int], protocol: Protocol, seed: int = 0) -> float:
    """Median seconds of `module(x)` for a seeded random x of `shape` (eval, inference mode)."""
    module = module.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))

    def run():
        with torch.inference_mode():
            return module(x)

    return median_seconds(run, protocol.warmup, protocol.repeats)[0]


def measure_table(network: str, candidates: Sequence["BlockType | str"], out: "str | Path", *,
                  input_size: int | None = None, protocol: Protocol = Protocol(), resume: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Time every candidate at every distinct block shape of `network`, and the stem and head.

    Writes `out` after each entry; with `resume`, continues the table in `out` (same network,
    input size, batch size and thread count) and times only what it lacks.
    """
    spec = network_spec(network)
    size = input_size or spec.input_size
    cands = [parse_block(c) for c in candidates]
    threads = torch.get_num_threads()
    table = _start(spec.name, size, protocol, threads, Path(out), resume)
    slots = {}
    for slot in spec.slots(size):
        slots.setdefault(shape_key(slot), slot)
    todo = [(key, b) for key, slot in slots.items() for b in cands
            if b.problem(slot.c_in, slot.c_out) is None and b.name not in table.blocks.get(key, {})]
    done, total = 0, len(todo) + (table.fixed == 0)
    n = protocol.batch_size
    if table.fixed == 0:  # stem and head, timed as the modules the network builds
        net = build_model(spec.name)
        head_in = (n, spec.widths[-1], *_final_side(spec, size))
        fixed = time_module(net.stem, (n, 3, size, size), protocol) + time_module(net.head, head_in, protocol)
        table = _replace(table, fixed=fixed)
        table.save(out)
        done += 1
        if progress:
            progress(done, total)
    for key, block in todo:
        slot = slots[key]
        module = Block(block, slot.c_in, slot.c_out, slot.stride)
        seconds = time_module(module, (n, slot.c_in, slot.h, slot.w), protocol)
        blocks = {k: dict(v) for k, v in table.blocks.items()}
        blocks.setdefault(key, {})[block.name] = seconds
        table = _replace(table, blocks=blocks)
        table.save(out)
        done += 1
        if progress:
            progress(done, total)
    return table


def measure_network(model: nn.Module, input_size: int, protocol: Protocol = Protocol()) -> float:
    """Median end-to-end seconds of a whole network, with the same protocol as its blocks."""
    return time_module(model, (protocol.batch_size, 3, input_size, input_size), protocol)


def validate_table(table: LatencyTable, candidates: Sequence["BlockType | str"], n: int = 30, seed: int = 0, *,
                   protocol: Protocol | None = None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[LatencyTable, dict[str, Any]]:
    """Predicted against measured latency of `n` random genotypes (each block uniform over the
    candidates valid there, from `seed`), and the table with its `offset` fitted: the median of
    measured - (stem + head + blocks), so that corrected predictions are unbiased.

    Returns (fitted table, figures): per genotype predicted and measured seconds, and the median
    and worst relative error before and after the correction.
    """
    protocol = protocol or Protocol(batch_size=table.batch_size)
    cands = [parse_block(c) for c in candidates]
    spec = table.spec
    rng = np.random.default_rng(seed)
    base = _replace(table, offset=0.0)
    rows = []
    for i in range(n):
        blocks = [cands[rng.choice([j for j, c in enumerate(cands) if c.problem(s.c_in, s.c_out) is None])]
                  for s in spec.slots(table.input_size)]
        genotype = ",".join(b.name for b in blocks)
        measured = measure_network(build_model(spec.name, genotype), table.input_size, protocol)
        rows.append({"genotype": genotype, "predicted_s": base.predict(blocks), "measured_s": measured})
        if progress:
            progress(i + 1, n)
    offset = statistics.median(r["measured_s"] - r["predicted_s"] for r in rows)
    raw = [abs(r["predicted_s"] - r["measured_s"]) / r["measured_s"] for r in rows]
    fixed = [abs(r["predicted_s"] + offset - r["measured_s"]) / r["measured_s"] for r in rows]
    figures = {"genotypes": n, "seed": seed, "offset_s": offset,
               "median_rel_error": statistics.median(raw), "worst_rel_error": max(raw),
               "median_rel_error_corrected": statistics.median(fixed), "worst_rel_error_corrected": max(fixed),
               "rows": rows}
    return table.with_offset(offset, {k: v for k, v in figures.items() if k != "rows"}), figures


def _start(network: str, size: int, protocol: Protocol, threads: int, out: Path, resume: bool) -> LatencyTable:
    if out.exists() and not resume:
        raise BlockSwapError(f"{str(out)!r} exists; add --resume to complete that table or choose another --out")
    if out.exists():
        table = load_latency_table(out)
        want = (network, size, protocol.batch_size, threads)
        have = (table.network, table.input_size, table.batch_size, table.threads)
        if have != want:
            raise BlockSwapError(f"cannot resume {str(out)!r}: it times network, input size, batch size, threads "
                                 f"{have}, not {want}")
        return table
    machine = {k: str(v) for k, v in versions().items()}
    return LatencyTable(network, size, protocol.batch_size, "cpu", "torch", threads, 0.0, {}, 0.0, machine)


def _replace(table: LatencyTable, **changes: Any) -> LatencyTable:
    from dataclasses import replace

    return replace(table, **changes)


def _final_side(spec, size: int) -> tuple[int, int]:
    slots = spec.slots(size)
    last = slots[-1]
    h = (last.h - 1) // last.stride + 1
    return h, h

