"""Evaluation: top-1 / top-5 error and loss over a whole split, summed over data-parallel ranks."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BlockSwapError
from .distributed import Distributed


@torch.no_grad()
def evaluate(model: nn.Module, split, *, batch_size: int = 500, dist: Distributed | None = None,
             amp_dtype: torch.dtype | None = None,
             memory_format: torch.memory_format = torch.preserve_format,
             which: str = "val", input_size: int | None = None) -> dict[str, float]:
    """Top-1 / top-5 error (percent) and mean cross-entropy of `model` on every image of `split`.

    `split`: a loaded split (`load_split`), or data as `train_model` takes it (a dataset name, a
    torch Dataset of (image, label), a pair of tensors), whose `which` split is loaded at
    `input_size` (default: the model's, for a BlockSwap network). Under data parallelism each
    rank scores its shard and the counts are summed.
    """
    if not isinstance(model, nn.Module):
        raise BlockSwapError(f"evaluate: model must be a torch nn.Module, got {type(model).__name__}")
    dev = next(model.parameters()).device
    if not callable(getattr(split, "batches", None)):
        from ..data.load import load_split

        size = input_size or getattr(getattr(model, "spec", None), "input_size", None)
        split = load_split(split, which, size, dev)
    dist = dist or Distributed(torch.device("cpu"))
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, top-1 hits, top-5 hits, images
    for x, y in split.batches(batch_size, rank=dist.rank, world_size=dist.world_size):
        with autocast(dev, amp_dtype):
            logits = model(x.contiguous(memory_format=memory_format))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == y[:, None]
        sums += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                             hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                             torch.tensor(float(y.shape[0]), dtype=torch.float64, device=dev)])
    loss, top1, top5, n = dist.all_sum(sums).tolist()
    if n == 0:
        raise BlockSwapError("the evaluation split is empty")
    return {"loss": loss / n, "top1_error": 100 * (1 - top1 / n), "top5_error": 100 * (1 - top5 / n),
            "images": int(n)}


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast type of a training run with setting `amp` (`TrainConfig.amp`), or None.

    CUDA (`amp` True or "auto"): bf16 where the GPU has it, else fp16 (the caller scales the
    loss). CPU: bf16 on CPUs with bf16 instructions (AVX512-BF16 or AMX); elsewhere autocast
    emulates bf16 and is slower than float32, so "auto" means float32 there and True is refused.
    """
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        if cpu_has_bf16():
            return torch.bfloat16
        if amp is True:
            raise BlockSwapError(f"--amp: bf16 autocast needs a CPU with AVX512-BF16 or AMX instructions; "
                                 f"{cpu_name()} has neither; use --no-amp (float32) or leave --amp out")
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """"bfloat16", "float16" or "float32": what a run computes in (its identity's "precision")."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def legacy_precision(amp: Any, device: torch.device) -> str:
    """What a checkpoint written before runs recorded their precision computed in: blockswap 0.2
    ran True in mixed precision on CUDA only and "cpu" in bf16 on the CPU too."""
    if device.type == "cpu":
        return "bfloat16" if amp == "cpu" else "float32"
    return precision_name(amp_dtype(bool(amp), device))  # CUDA: as today


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU: the Linux flags avx512_bf16 / amx_bf16, or torch's capability."""
    if _cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return True
    return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"this CPU ({line.partition(':')[2].strip()})"
    except OSError:
        pass
    import platform

    return f"this CPU ({platform.processor() or platform.machine()})"
