"""Image-space references shared by the explainers and the augment: the Gaussian blur and per-sample baselines.

The same blur is the masking fill (``fill="blur"``), the COCOA/RISE blurred baseline and the reference of path
and perturbation attributions (``baseline="blur"``), so it lives below both packages.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BASELINES", "gaussian_blur", "make_baseline", "check_baseline"]

#: Per-sample baselines understood by :func:`make_baseline` (besides a number or a tensor).
BASELINES: tuple[str, ...] = ("zero", "blur")


def gaussian_blur(images: Tensor, kernel_size: int = 21, sigma: float = 5.0) -> Tensor:
    """Gaussian blur of a batch with reflect padding (the COCOA/RISE blurred baseline).

    Large kernels on large images are computed as downsample -> blur -> upsample, which is much cheaper and
    visually equivalent for the heavy blurs used as fills and baselines.

    Args:
        images: ``(B, C, H, W)`` floating point batch.
        kernel_size: side of the square kernel at full resolution (made odd, and smaller than twice the side).
        sigma: standard deviation in pixels at full resolution.

    Returns:
        ``(B, C, H, W)`` blurred batch, same dtype and device.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.

    Example:
        >>> import torch
        >>> const = torch.full((1, 3, 8, 8), 0.25)
        >>> torch.allclose(gaussian_blur(const), const)
        True
    """
    import kornia  # lazy: importing exaug must stay fast

    _, _, h, w = images.shape
    factor = 1
    while sigma / (factor * 2) >= 1.5 and min(h, w) // (factor * 2) >= 32:
        factor *= 2
    x = F.avg_pool2d(images, factor) if factor > 1 else images
    k = max(3, round(kernel_size / factor) // 2 * 2 + 1)  # odd
    k = min(k, 2 * min(x.shape[-2:]) - 1)  # reflect padding needs k // 2 < side
    s = sigma / factor
    x = kornia.filters.gaussian_blur2d(x, (k, k), (s, s), border_type="reflect")
    if factor > 1:
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x


def check_baseline(baseline: Any, name: str = "baseline", extra: tuple[str, ...] = ()) -> Any:
    """Validate a baseline option when an explainer is built (a tensor's shape is checked per call).

    Args:
        baseline: one of :data:`BASELINES` (or of ``extra``), a real number or a tensor.
        name: option name for the error message.
        extra: further accepted strings (e.g. GradientSHAP's ``"zero+blur"``).

    Returns:
        ``baseline`` unchanged.

    Example:
        >>> check_baseline("blur")
        'blur'
        >>> check_baseline("mean")
        Traceback (most recent call last):
        ...
        ValueError: baseline must be one of ('zero', 'blur'), a number or a tensor, got 'mean'
    """
    if isinstance(baseline, Tensor) or (isinstance(baseline, numbers.Real) and not isinstance(baseline, bool)):
        return baseline
    allowed = BASELINES + extra
    if isinstance(baseline, str) and baseline in allowed:
        return baseline
    raise ValueError(f"{name} must be one of {allowed}, a number or a tensor, got {baseline!r}")


def make_baseline(images: Tensor, baseline: str | float | Tensor) -> Tensor:
    """Per-sample reference images for path and perturbation methods.

    Args:
        images: ``(B, C, H, W)`` normalised batch.
        baseline: ``"zero"`` (zeros in normalised space, i.e. the dataset-mean colour when images are
            standardised), ``"blur"`` (each image blurred with :func:`gaussian_blur`, the same blur as the masking
            fill), a number (constant image) or a tensor ``(C, H, W)``, ``(1, C, H, W)`` or ``(B, C, H, W)``.

    Returns:
        ``(B, C, H, W)`` on the device and dtype of ``images``, detached.

    Shape:
        ``images``: ``(B, C, H, W)``; result: ``(B, C, H, W)`` (a tensor baseline is expanded, not copied).

    Example:
        >>> import torch
        >>> x = torch.randn(2, 3, 4, 4)
        >>> make_baseline(x, 0.5).unique().tolist()
        [0.5]
        >>> make_baseline(x, torch.zeros(3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """
    images = images.detach()
    if isinstance(baseline, Tensor):
        ref = baseline.detach().to(device=images.device, dtype=images.dtype)
        if ref.dim() == 3:
            ref = ref.unsqueeze(0)
        if ref.dim() != 4 or ref.shape[1:] != images.shape[1:] or ref.shape[0] not in (1, images.shape[0]):
            raise ValueError(
                f"baseline tensor must have shape (C, H, W), (1, C, H, W) or (B, C, H, W) = {tuple(images.shape)}, "
                f"got {tuple(baseline.shape)}"
            )
        return ref.expand_as(images)
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "blur":
        return gaussian_blur(images)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        return torch.full_like(images, float(baseline))
    raise ValueError(f"baseline must be one of {BASELINES}, a number or a tensor, got {baseline!r}")
