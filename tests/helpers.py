"""Helpers shared by the tests: the CLI in a subprocess and its one-line errors, tiny dataset folders
written by hand (CIFAR pickles, ImageNet class folders), and independent reference computations
(no code from blockswap.proxies; block costs counted by PyTorch, not by blockswap.space).
Test files import shared pieces from here, never from one another (tests/test_architecture.py).

`brute_fisher` follows Theis et al.'s definition literally: a mask m[n, c] = 1 multiplies every
channel of every example at each probe, the mean cross-entropy is backpropagated with a plain
``loss.backward()``, and Delta_c = 1/(2N) sum_n (dL/dm[n,c])^2 is summed with explicit loops.
dL/dm[n,c] = sum_ij a[n,c,i,j] g[n,c,i,j], so this is the paper's Eq. (2) by another road.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 600):
    """Run `python -m blockswap ARGS` in a subprocess; return the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "blockswap", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert that `proc` failed as a usage error (exit 2) with one `blockswap...` line on stderr
    containing every needle; return that line."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blockswap"), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar10(root, per_batch=3, seed=0):
    """A tiny cifar-10-batches-py folder; returns the (images, labels) written, in file order."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()  # the release stores a python list
        write_pickle(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data})
        written[name] = (data, labels)
    return folder, written


def make_imagenet(root, classes=("n01", "n02", "n03"), per_class=4, seed=0):
    """Tiny ImageNet-style train/ and val/ class folders of random images (PNG and JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
                ext = "png" if i % 2 else "JPEG"
                Image.fromarray(arr).save(root / split / c / f"img{i}.{ext}")
    return root


def brute_fisher(model, x, y, loss_scale: float | None = None) -> list[float]:
    """Per-block Fisher of `model` (train mode) on (x, y), with explicit per-channel loops.

    `loss_scale`: multiply the summed loss by this instead of 1/N (for chunked references).
    """
    model.train()
    masks = []

    def hook(_module, _inputs, out):
        m = torch.ones(out.shape[0], out.shape[1], dtype=out.dtype, requires_grad=True)
        masks.append(m)
        return out * m[:, :, None, None]

    handles = [b.probe.register_forward_hook(hook) for b in model.blocks]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    n = x.shape[0]
    loss = F.cross_entropy(logits, y, reduction="sum") * (1.0 / n if loss_scale is None else loss_scale)
    loss.backward()
    total_n = n if loss_scale is None else round(1 / loss_scale)
    per_block = []
    for m in masks:
        g = m.grad.double().tolist()
        block = 0.0
        for c in range(len(g[0])):
            block += sum(g[i][c] ** 2 for i in range(n)) / (2 * total_n)
        per_block.append(block)
    return per_block


def counted(module, x) -> tuple[int, int]:
    """(parameters, MACs) as PyTorch reports them for one forward pass of x in eval mode:
    ``sum(p.numel())`` and half of torch.utils.flop_counter's FLOPs (one MAC is two FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(x)
    return params, fc.get_total_flops() // 2


def check_block_costs(network: str, blocks) -> int:
    """Assert that the analytic params and MACs of every block type in `blocks` equal the built
    block's counted ones at every position of `network` where the type is valid; returns how
    many (position, type) pairs were checked. Positions of one shape share one measurement."""
    from blockswap.nn import Block
    from blockswap.space import Complexity, network_spec, parse_block
    from blockswap.space.costs import block_complexity

    seen: dict = {}
    checked = 0
    for slot in network_spec(network).slots():
        for block in map(parse_block, blocks):
            if block.problem(slot.c_in, slot.c_out):
                continue
            key = (block.name, slot.c_in, slot.c_out, slot.stride, slot.h)
            if key not in seen:
                seen[key] = counted(Block(block, slot.c_in, slot.c_out, slot.stride),
                                    torch.randn(1, slot.c_in, slot.h, slot.w))
            cx = block_complexity(block, slot.c_in, slot.c_out, slot.stride, Complexity(slot.h, slot.w))
            assert (cx.params, cx.macs) == seen[key], (network, slot.index, block.name)
            checked += 1
    return checked
