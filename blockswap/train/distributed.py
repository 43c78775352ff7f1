"""Data parallel: where this process sits in a torchrun job (NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..devices import check_device


@dataclass
class Distributed:
    """Where this process sits in a data-parallel job (world_size 1: a plain run)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    owned: bool = False  # we created the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            torch.distributed.all_reduce(t)
        return t

    def close(self) -> None:
        if self.owned:
            torch.distributed.destroy_process_group()


def setup_distributed(device: str | torch.device | None = None) -> Distributed:
    """Join the process group torchrun describes (WORLD_SIZE > 1) or an initialised one.

    Backend: NCCL for GPUs, gloo on CPU. Each process uses ``cuda:LOCAL_RANK`` when GPUs exist.
    """
    import torch.distributed as td

    if device is not None:
        check_device(device)  # a missing GPU fails here, before a process group or a file
    owned = False
    if td.is_available() and td.is_initialized():
        rank, world = td.get_rank(), td.get_world_size()
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        use_gpu = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
        td.init_process_group("nccl" if use_gpu else "gloo")
        rank, world, owned = td.get_rank(), td.get_world_size(), True
    else:
        rank, world = 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return Distributed(dev, rank, world, owned)
