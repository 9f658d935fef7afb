"""Process-group setup for ``torchrun`` launches (one process per device)."""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup_distributed", "resolve_device"]


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    device: torch.device
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        """Destroy the process group if :func:`setup_distributed` created it."""
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; other names are checked."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    NCCL is used on CUDA devices and gloo on the CPU. Without ``torchrun`` this returns a single-process
    context. A group that already exists (created by the caller) is reused and left open.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size <= 1 and not dist.is_initialized():
        return DistContext(0, 1, resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
        created = True
    return DistContext(dist.get_rank(), dist.get_world_size(), resolved, created)
