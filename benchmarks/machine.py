"""What every benchmark prints first: the CPU, the torch build and the threads, so that figures
from different machines are never compared blindly (kernels and float32 rounding differ)."""

from __future__ import annotations

import torch

from blockswap.files import cpu_model


def describe() -> str:
    mkldnn = "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"
    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    return (f"CPU: {cpu_model()}; torch {torch.__version__} ({mkldnn}{cuda}, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}); {torch.get_num_threads()} threads")
