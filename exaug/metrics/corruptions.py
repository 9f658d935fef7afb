"""Common corruptions (in the spirit of CIFAR-10-C, Hendrycks & Dietterich 2019) in torch / kornia, no download.

Every corruption maps a pixel-space batch ``(B, C, H, W)`` in ``[0, 1]`` to a corrupted batch in ``[0, 1]``,
batched and on the input's device, at severity 1..5. Parameters are CIFAR-10-C's where the operation is the
same; blur scales with the image side so that a severity means the same visual damage at any resolution:

==================  ==========================================  ==============================================
name                operation                                    parameter at severity 1, 2, 3, 4, 5
==================  ==========================================  ==============================================
``gaussian_noise``  ``x + N(0, c^2)``                            c = 0.04, 0.06, 0.08, 0.09, 0.10
``gaussian_blur``   Gaussian blur, reflect padding (defocus-     sigma = (0.4, 0.6, 0.7, 0.8, 1.0) * side / 32
                    like), kernel ``2 * ceil(3 sigma) + 1``
``contrast``        ``(x - m) * c + m``, m = per-image mean      c = 0.75, 0.5, 0.4, 0.3, 0.15
``brightness``      HSV value ``v + c`` (RGB); ``x + c`` else    c = 0.05, 0.1, 0.15, 0.2, 0.3
``jpeg``            JPEG round trip, kornia's differentiable     quality = 80, 65, 58, 50, 40
                    codec (RGB only)
==================  ==========================================  ==============================================

``side`` is ``min(H, W)``. CIFAR-10-C's own ``gaussian_blur`` uses the same sigmas on 32x32; its ``defocus_blur``
(a disk kernel) is approximated here by the Gaussian. :func:`corruption_accuracy` evaluates a classifier on
normalised inputs, the same way as the attacks in :mod:`exaug.metrics.calibration`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..utils.images import gaussian_blur as _blur
from ..utils.checks import check_images, check_labels
from .base import check_model, normalisation, predict

__all__ = ["CORRUPTIONS", "SEVERITY_PARAMETERS", "corrupt", "corruption_accuracy"]

SEVERITY_PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg": (80, 65, 58, 50, 40),
}


def _gaussian_noise(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    return x + c * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _gaussian_blur(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    sigma = c * min(x.shape[-2:]) / 32
    kernel = 2 * math.ceil(3 * sigma) + 1
    return _blur(x, kernel_size=kernel, sigma=sigma)


def _contrast(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def _brightness(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    if x.shape[1] != 3:
        return x + c
    import kornia

    hsv = kornia.color.rgb_to_hsv(x)
    hsv = torch.cat([hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)], dim=1)
    return kornia.color.hsv_to_rgb(hsv)


def _jpeg(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    if x.shape[1] != 3:
        raise ValueError(f"the jpeg corruption needs RGB images (C = 3), got C = {x.shape[1]}")
    import kornia

    quality = torch.tensor([float(c)], device=x.device, dtype=x.dtype)
    return kornia.enhance.jpeg_codec_differentiable(x, quality)


CORRUPTIONS: dict[str, Callable[[Tensor, float, torch.Generator | None], Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "brightness": _brightness,
    "jpeg": _jpeg,
}


def corrupt(images: Tensor, name: str, severity: int = 3, *, seed: int | torch.Generator | None = 0) -> Tensor:
    """Apply one corruption.

    Args:
        images: ``(B, C, H, W)`` pixels in ``[0, 1]``.
        name: a key of :data:`CORRUPTIONS`.
        severity: 1 (mild) .. 5 (strong).
        seed: seed of a private generator for random corruptions (or a generator; ``None``: global RNG).

    Returns:
        ``(B, C, H, W)`` corrupted pixels in ``[0, 1]``.
    """
    check_images(images)
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)}")
    if not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")
    generator = seed
    if isinstance(seed, int):
        generator = torch.Generator(device=images.device).manual_seed(seed)
    with torch.no_grad():
        out = CORRUPTIONS[name](images.detach(), SEVERITY_PARAMETERS[name][severity - 1], generator)
    return out.clamp_(0, 1)


def corruption_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    mean: Sequence[float] | Tensor | None = None,
    std: Sequence[float] | Tensor | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
) -> dict[str, dict[int, Tensor]]:
    """Top-1 accuracy of ``model`` on corrupted versions of a normalised batch.

    Args:
        model: normalised images -> logits (run isolated, no autograd).
        images: ``(B, C, H, W)`` normalised batch; un-normalised with ``mean`` / ``std``, corrupted in pixel space,
            re-normalised.
        labels: ``(B,)`` int labels.
        mean: per-channel normalisation means (``None``: pixel inputs).
        std: the matching per-channel standard deviations.
        corruptions: names (default: all of :data:`CORRUPTIONS`).
        severities: severities to evaluate.
        seed: seed of the random corruptions (the same noise for every severity, so severities are comparable).

    Returns:
        ``{name: {severity: 0-dim accuracy tensor}}``.
    """
    check_model(model)
    check_images(images)
    labels = check_labels(labels, images.shape[0], "labels").to(images.device)
    m, s = normalisation(mean, std, images)
    pixels = (images.detach() * s + m).clamp(0, 1)
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    out: dict[str, dict[int, Any]] = {}
    for name in names:
        out[name] = {}
        for severity in severities:
            corrupted = (corrupt(pixels, name, severity, seed=seed) - m) / s
            out[name][severity] = predict(model, corrupted).argmax(dim=1).eq(labels).double().mean()
    return out
