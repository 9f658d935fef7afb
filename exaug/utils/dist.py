"""Minimal ``torch.distributed`` helpers: rank, world size and an all-gather that carries gradients.

Contrastive losses need the negatives of every rank. :func:`gather` concatenates a tensor from all ranks along
dim 0, even when ranks hold different numbers of rows (ExConB batches grow by a random number of background
rows per rank), and lets gradients flow back to the rank that produced each row.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as torch_dist
from torch import Tensor

__all__ = ["is_distributed", "world_size", "rank", "gather_sizes", "gather"]


def is_distributed() -> bool:
    """``True`` when a default process group is initialised."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def world_size() -> int:
    """Number of ranks in the default group (1 when not distributed)."""
    return torch_dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    return torch_dist.get_rank() if is_distributed() else 0


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """First-dim size of every rank, in rank order.

    This is a collective (every rank must call it) and a host sync: the sizes are needed on the host to pad
    and trim. Compute it once and pass it to several :func:`gather` calls that share the same first dim.

    Args:
        n: this rank's size.
        device: device of the communication tensor (CUDA for NCCL, CPU for gloo).
    """
    if not is_distributed():
        return [n]
    local = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.empty_like(local) for _ in range(world_size())]
    torch_dist.all_gather(out, local)
    return torch.cat(out).tolist()


def _all_gather_padded(tensor: Tensor, sizes: Sequence[int]) -> Tensor:
    # all_gather needs equal shapes: pad every rank to the largest size, then trim each piece.
    is_bool = tensor.dtype == torch.bool
    if is_bool:  # not every backend reduces/gathers bool tensors
        tensor = tensor.to(torch.uint8)
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    pieces = [torch.empty_like(padded) for _ in sizes]
    torch_dist.all_gather(pieces, padded.contiguous())
    out = torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])
    return out.bool() if is_bool else out


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward routes each row's gradient back to its owner rank.

    Every rank computes its own loss on the gathered tensor, so the gradient w.r.t. this rank's rows is the sum
    over ranks of their gradients w.r.t. those rows: all-reduce (SUM) the incoming gradient and keep the local
    slice. Only ``all_reduce`` is used, which every backend (including gloo) supports.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor, sizes: tuple[int, ...]) -> Tensor:  # type: ignore[override]
        ctx.sizes = sizes
        return _all_gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce is in place; never modify autograd's buffer
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: rank()])
        return grad[start : start + ctx.sizes[rank()]], None


def gather(tensor: Tensor, sizes: Sequence[int] | None = None) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0, with gradients.

    Ranks may hold different first-dim sizes. When the input requires grad, the backward pass all-reduces the
    gradient, so every rank must run backward through the result (as DDP training does anyway).

    Args:
        tensor: ``(n_rank, *)`` local tensor; trailing dims must match across ranks.
        sizes: first-dim size of every rank as returned by :func:`gather_sizes` (computed when omitted).

    Returns:
        ``(sum(sizes), *)`` tensor in rank order, or ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], tensor.device)
    if tensor.requires_grad and torch.is_grad_enabled():
        return _GatherWithGrad.apply(tensor, tuple(sizes))
    return _all_gather_padded(tensor, sizes)
