"""Input validation shared by explainers, the augment, the saliency cache and the metrics: errors name the
argument and what was expected."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_images", "check_indices", "check_labels"]


def check_images(images: Any, name: str = "images") -> Tensor:
    """Validate a non-empty floating point ``(B, C, H, W)`` batch and return it."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point (normalised images), got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B = 0)")
    return images


def check_labels(labels: Any, batch_size: int, name: str = "targets") -> Tensor:
    """Validate integer class indices of shape ``(batch_size,)`` and return them as int64."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"{name} must have shape ({batch_size},), got {tuple(labels.shape)}")
    return labels.long()


def check_indices(
    indices: Any, size: int, name: str = "indices", batch_size: int | None = None, check_range: bool = True
) -> Tensor:
    """Validate integer positions ``(B,)`` into a collection of ``size`` items and return them as int64.

    Args:
        indices: ``(B,)`` integer tensor (e.g. dataset indices of a batch).
        size: number of items; every index must lie in ``[0, size)``.
        name: argument name for the error messages.
        batch_size: if given, the required ``B``.
        check_range: check ``[0, size)``; this costs one host sync (none for an empty tensor), so callers that
            validate the same indices again may skip it.
    """
    if not isinstance(indices, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer indices, got {type(indices).__name__}")
    if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
        raise TypeError(f"{name} must hold integer indices, got dtype {indices.dtype}")
    if indices.dim() != 1 or (batch_size is not None and indices.shape[0] != batch_size):
        expected = f"({batch_size},)" if batch_size is not None else "(B,)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(indices.shape)}")
    indices = indices.long()
    if check_range and indices.numel() > 0:
        lo, hi = torch.stack((indices.min(), indices.max())).tolist()  # one host sync
        if lo < 0 or hi >= size:
            raise ValueError(f"{name} must lie in [0, {size}), got values in [{lo}, {hi}]")
    return indices
