"""The one check of a torch device name, made before any work or file.

``torch.device("cuda:7")`` parses on a machine without a GPU; the failure comes later, deep in
a kernel call, after a run folder has been written. `check_device` asks the backends first.
"""

from __future__ import annotations

from .errors import BlockSwapError, choices

DEVICE_TYPES = ("cpu", "cuda", "mps")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_devices() -> list[str]:
    """The device names this machine can run on: cpu, cuda:0..N-1, mps."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def check_device(name: "str | object") -> "object":
    """`name` as a `torch.device` this machine has, or a one-line error listing the ones it has."""
    import torch

    if isinstance(name, torch.device):
        text = str(name)
    else:
        text = str(name).strip().lower()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise BlockSwapError(f"unknown device {str(name)!r}; valid devices here: "
                             f"{choices(available_devices())}") from None
    if device.type not in DEVICE_TYPES:
        raise BlockSwapError(f"unsupported device {str(name)!r}; valid devices here: {choices(available_devices())}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BlockSwapError(f"device {str(name)!r} is not available: torch {torch.__version__} sees no "
                                 f"CUDA GPU on this machine; valid devices here: {choices(available_devices())}")
        if device.index is not None and device.index >= count:
            raise BlockSwapError(f"device {str(name)!r} is not available: this machine has {count} CUDA "
                                 f"GPU(s); valid devices here: {choices(available_devices())}")
    if device.type == "mps" and "mps" not in available_devices():
        raise BlockSwapError(f"device {str(name)!r} is not available on this machine; valid devices here: "
                             f"{choices(available_devices())}")
    return device
