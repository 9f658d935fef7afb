"""Input validation shared by explainers, the augment and the metrics: errors name the argument and what was
expected."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_images", "check_labels"]


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
