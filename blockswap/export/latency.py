"""Measuring latency tables (`space.latency`) and checking them against whole networks.

Protocol, the same for a block and for a network: eval mode, a seeded random input of the
block's (or network's) input shape, `warmup` untimed calls, then the median of `repeats` timed
calls (`timing.median_seconds`, wall time in seconds). Two backends:

* ``torch``: eager PyTorch under `torch.inference_mode`;
* ``onnxruntime``: each module exported as `blockswap export` ships a network (batch norms
  folded, `onnx.export_module`, fixed batch size) and timed in an onnxruntime CPU session with
  torch's thread count. The export dominates the time of such a table (docs/deployment.md).

Positions whose block has the same input and output shape share one measurement (`shape_key`):
WRN-40-2's 18 positions are 6 shapes. Each measured entry is written to the table file at once
(atomically), so an interrupted measurement resumes without timing anything twice.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import BlockSwapError, choices
from ..files import versions
from ..nn.block import Block
from ..nn.network import build_model
from ..outdir import option
from ..seeding import derive_seed, torch_seed
from ..space.blocks import BlockType, parse_block
from ..space.latency import LatencyTable, load_latency_table, shape_key
from ..space.networks import network_spec
from .timing import eager_call, median_seconds, session_call

BACKENDS = ("torch", "onnxruntime")


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


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise BlockSwapError(f"unknown backend {backend!r}; valid backends: {choices(BACKENDS)}")
    return backend


def time_module(module: nn.Module, shape: Sequence[int], protocol: Protocol, seed: int = 0,
                backend: str = "torch") -> float:
    """Median seconds of `module(x)` for a seeded random x of `shape` (eval mode)."""
    module = module.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    if check_backend(backend) == "onnxruntime":
        from .onnx import module_session

        run = session_call(module_session(module, shape, dynamic_batch=False), x)
    else:
        run = eager_call(module, x)
    return median_seconds(run, protocol.warmup, protocol.repeats)[0]


def measure_table(network: str, candidates: Sequence["BlockType | str"], out: "str | Path", *,
                  input_size: int | None = None, protocol: Protocol = Protocol(), backend: str = "torch",
                  resume: bool = False, progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Time every candidate at every distinct block shape of `network`, and the stem and head,
    with torch's current thread count (recorded in the table).

    Writes `out` after each entry; with `resume`, continues the table in `out` (same network,
    input size, batch size, backend, threads, CPU and torch) and times only what it lacks.
    """
    spec = network_spec(network)
    size = input_size or spec.input_size
    cands = [parse_block(c) for c in candidates]
    table = _start(spec.name, size, protocol, check_backend(backend), Path(out), resume)
    slots = {}
    for slot in spec.slots(size):
        slots.setdefault(shape_key(slot), slot)
    todo = [(key, b) for key, slot in slots.items() for b in cands
            if b.problem(slot.c_in, slot.c_out) is None and b.name not in table.blocks.get(key, {})]
    done, total = 0, len(todo) + (table.fixed == 0)
    n = protocol.batch_size
    if table.fixed == 0:  # stem and head, timed as the modules the network builds
        with torch_seed(0):  # weights barely change a time, but every draw comes from a seed
            net = build_model(spec.name)
        head_in = (n, spec.widths[-1], *_final_side(spec, size))
        fixed = (time_module(net.stem, (n, 3, size, size), protocol, backend=backend)
                 + time_module(net.head, head_in, protocol, backend=backend))
        table = replace(table, fixed=fixed)
        table.save(out)
        done += 1
        if progress:
            progress(done, total)
    for key, block in todo:
        slot = slots[key]
        with torch_seed(0):
            module = Block(block, slot.c_in, slot.c_out, slot.stride)
        seconds = time_module(module, (n, slot.c_in, slot.h, slot.w), protocol, backend=backend)
        blocks = {k: dict(v) for k, v in table.blocks.items()}
        blocks.setdefault(key, {})[block.name] = seconds
        table = replace(table, blocks=blocks)
        table.save(out)
        done += 1
        if progress:
            progress(done, total)
    return table


def measure_network(model: nn.Module, input_size: int, protocol: Protocol = Protocol(),
                    backend: str = "torch") -> float:
    """Median end-to-end seconds of a whole network, with the same protocol as its blocks."""
    return time_module(model, (protocol.batch_size, 3, input_size, input_size), protocol, backend=backend)


def validate_table(table: LatencyTable, candidates: Sequence["BlockType | str"] | None = None, n: int = 30,
                   seed: int = 0, *, protocol: Protocol | None = None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[LatencyTable, dict[str, Any]]:
    """Predicted against measured latency of `n` random genotypes, timed with the table's backend,
    and the table with its `offset` fitted: the median of measured - (stem + head + blocks), so
    that corrected predictions are unbiased.

    Each block is drawn uniformly (numpy generator from `seed`) from the `candidates` valid at
    its position (default: the types the table holds at that position's shape).
    Returns (fitted table, figures): per genotype predicted and measured seconds, and the median
    and worst relative error before and after the correction.
    """
    protocol = protocol or Protocol(batch_size=table.batch_size)
    cands = None if candidates is None else [parse_block(c) for c in candidates]
    spec = table.spec
    rng = np.random.default_rng(seed)  # the draws of the figures in docs/deployment.md
    base = replace(table, offset=0.0)
    rows = []
    for i in range(n):
        names = []
        for slot in spec.slots(table.input_size):
            pool = (sorted(table.blocks.get(shape_key(slot), {})) if cands is None
                    else [c.name for c in cands if c.problem(slot.c_in, slot.c_out) is None])
            if not pool:
                raise BlockSwapError(f"the latency table has no block type at block {slot.index} "
                                     f"({shape_key(slot)}); complete it with `blockswap latency-table --resume`")
            names.append(pool[int(rng.integers(len(pool)))])
        genotype = ",".join(names)
        predicted = base.predict(names)  # before timing: a type missing from the table fails at once
        with torch_seed(derive_seed(seed, "latency-validation", genotype)):
            model = build_model(spec.name, genotype)
        measured = measure_network(model, table.input_size, protocol, backend=table.backend)
        rows.append({"genotype": genotype, "predicted_s": predicted, "measured_s": measured})
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


def _machine(backend: str) -> dict[str, str]:
    machine = {k: str(v) for k, v in versions().items()}
    if backend == "onnxruntime":
        import onnxruntime

        machine["onnxruntime"] = onnxruntime.__version__
    return machine


def _start(network: str, size: int, protocol: Protocol, backend: str, out: Path, resume: bool) -> LatencyTable:
    if out.is_dir():  # neither a table to resume nor a file to write
        raise BlockSwapError(f"--out {str(out)!r} is a folder; give the table's file name, "
                             f"e.g. {str(out / 'latency.json')!r}")
    if out.exists() and not resume:
        raise BlockSwapError(f"{str(out)!r} exists; add {option('resume')} to complete that table or choose "
                             "another output file")
    machine, threads = _machine(backend), torch.get_num_threads()
    if out.exists():
        table = load_latency_table(out)
        # Times from another CPU, library or thread count must not be mixed into one table.
        want = (network, size, protocol.batch_size, backend, threads, machine["cpu"], machine["torch"])
        have = (table.network, table.input_size, table.batch_size, table.backend, table.threads,
                table.machine.get("cpu"), table.machine.get("torch"))
        if have != want:
            raise BlockSwapError(f"cannot resume {str(out)!r}: it times network, input size, batch size, backend, "
                                 f"threads, CPU, torch {have}, not {want}")
        return table
    return LatencyTable(network, size, protocol.batch_size, "cpu", backend, threads, 0.0, {}, 0.0, machine)


def _final_side(spec, size: int) -> tuple[int, int]:
    """Spatial size of the head's input: the last block's output."""
    last = spec.slots(size)[-1]
    return (last.h - 1) // last.stride + 1, (last.w - 1) // last.stride + 1
