"""Turning saliency maps into keep-masks and masked images, batched.

Two rules select the pixels to keep: a relative ``threshold`` on the per-sample min-max normalised map (the
ExCon paper keeps ``saliency > 0.5``) or a ``keep_fraction`` (exactly ``round(q * H * W)`` pixels per image with
the highest saliency, the drop/increase protocol). Dropped pixels take a ``fill``: ``"zero"`` (0 in normalised
space, i.e. the dataset-mean colour, as in the paper), ``"mean"`` (the image's own channel means), ``"blur"``
(a Gaussian blur of the image) or ``"noise"`` (standard normal noise in normalised space).

``"noise"`` is the only random fill: it draws from the ``generator`` passed to :func:`fill_like` /
:func:`apply_mask`, or from torch's global RNG when none is given.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from ..utils.images import gaussian_blur

__all__ = ["FILLS", "check_fill", "keep_mask", "fill_like", "apply_mask", "gaussian_blur"]

Fill = Literal["zero", "mean", "blur", "noise"]
FILLS: tuple[str, ...] = ("zero", "mean", "blur", "noise")


def check_fill(fill: Any, name: str = "fill") -> Fill | float:
    """Validate a fill option (one of :data:`FILLS` or a number) and return it; ``ValueError`` names ``name``."""
    if isinstance(fill, bool) or not (isinstance(fill, (int, float)) or fill in FILLS):
        raise ValueError(f"{name} must be one of {FILLS} or a number, got {fill!r}")
    return fill


def keep_mask(
    saliency: Tensor,
    *,
    threshold: float | None = 0.5,
    keep_fraction: float | None = None,
    flat: Tensor | None = None,
) -> Tensor:
    """Boolean keep-mask from normalised saliency.

    Args:
        saliency: normalised maps, in ``[0, 1]`` per sample.
        threshold: keep pixels with ``saliency > threshold`` (ignored when ``keep_fraction`` is given).
        keep_fraction: keep the ``round(keep_fraction * H * W)`` most salient pixels of each image (ties are
            broken by position, so the count is exact).
        flat: bool flags of the samples whose map carries no information: they keep nothing (with the threshold
            rule this holds by construction, since :func:`normalize_saliency` sets flat maps to zero).

    Shape:
        - saliency: ``(B, 1, H, W)``.
        - flat: ``(B,)``.
        - output: ``(B, 1, H, W)`` bool.

    Example:
        >>> import torch
        >>> keep_mask(torch.tensor([0.2, 0.5, 0.7, 1.0]).view(1, 1, 2, 2), threshold=0.5).view(-1).tolist()
        [False, False, True, True]
    """
    if saliency.dim() != 4 or saliency.shape[1] != 1:
        raise ValueError(f"saliency must have shape (B, 1, H, W), got {tuple(saliency.shape)}")
    if keep_fraction is not None:
        if not 0.0 <= keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
        flat_sal = saliency.flatten(1)
        k = int(round(keep_fraction * flat_sal.shape[1]))
        keep = torch.zeros_like(flat_sal, dtype=torch.bool)
        if k > 0:
            top = flat_sal.topk(k, dim=1).indices
            keep.scatter_(1, top, True)
        keep = keep.view_as(saliency)
        if flat is not None:
            keep &= ~flat.view(-1, 1, 1, 1)
        return keep
    if threshold is None or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] (relative to the per-sample range), got {threshold}")
    # Flat maps are all zeros after normalisation, and 0 > threshold is False for any threshold >= 0, so
    # they keep nothing without an extra pass over the batch.
    return saliency > threshold


def fill_like(
    images: Tensor, fill: Fill | float | Tensor = "zero", *, generator: torch.Generator | None = None
) -> Tensor:
    """What dropped pixels become, broadcastable to ``images``.

    Args:
        images: normalised batch.
        fill: ``"zero"``, ``"mean"``, ``"blur"``, ``"noise"``, a constant, or a tensor broadcastable to
            ``images`` (returned as is).
        generator: random source of ``"noise"`` (on the images' device); ``None``: torch's global RNG.

    Shape:
        - images: ``(B, C, H, W)``.
        - output: broadcastable to ``(B, C, H, W)`` (a scalar, ``(B, C, 1, 1)`` or ``(B, C, H, W)``).
    """
    if isinstance(fill, Tensor):  # already computed (e.g. shared by several masks of the same images)
        return fill
    if isinstance(fill, (int, float)):
        return torch.full((), float(fill), dtype=images.dtype, device=images.device)
    if fill == "zero":
        return torch.zeros((), dtype=images.dtype, device=images.device)
    if fill == "mean":
        return images.mean(dim=(2, 3), keepdim=True)
    if fill == "blur":
        return gaussian_blur(images)
    if fill == "noise":
        if generator is None:
            return torch.randn_like(images)
        return torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    raise ValueError(f"fill must be one of {FILLS} or a number, got {fill!r}")


def apply_mask(
    images: Tensor,
    keep: Tensor,
    fill: Fill | float | Tensor = "zero",
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``images`` where ``keep`` is True, the ``fill`` elsewhere.

    Args:
        images: the batch to mask.
        keep: bool keep-mask.
        fill: see :func:`fill_like`.
        generator: random source of ``fill="noise"`` (see :func:`fill_like`).

    Shape:
        - images: ``(B, C, H, W)``.
        - keep: ``(B, 1, H, W)``.
        - output: ``(B, C, H, W)`` masked images.

    Example:
        >>> import torch
        >>> images = torch.ones(2, 3, 4, 4)
        >>> keep = keep_mask(torch.rand(2, 1, 4, 4), keep_fraction=0.25)
        >>> masked = apply_mask(images, keep, "zero")
        >>> masked.shape, int(masked[:, 0].sum())
        (torch.Size([2, 3, 4, 4]), 8)
    """
    if keep.shape[0] != images.shape[0] or keep.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"keep mask {tuple(keep.shape)} does not match images {tuple(images.shape)}")
    # A float 0/1 weight with mul / lerp is exact for kept and dropped pixels, and several times faster than a
    # broadcasting torch.where on the CPU (this runs on every training step).
    weight = keep.to(images.dtype)
    if (isinstance(fill, str) and fill == "zero") or (isinstance(fill, (int, float)) and float(fill) == 0.0):
        return images * weight
    return torch.lerp(fill_like(images, fill, generator=generator).expand_as(images), images, weight)
