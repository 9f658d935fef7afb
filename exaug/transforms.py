"""View transforms of supervised contrastive learning, per image (torchvision) and per batch on device (Kornia).

* :func:`supcon_random_view`: SupContrast's random view -- RandomResizedCrop(scale 0.2-1), horizontal flip,
  ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8, grayscale with p=0.2, normalise.
* :func:`standard_view`: resize and normalise only (ExCon's un-augmented "original").
* :class:`TwoCropTransform` (SupCon) and :class:`ExConTransform` (ExCon's three views) wrap them for a dataset.
* :class:`DeviceViewAugment`: the same random view for a whole batch ``(B, 3, H, W)`` on its device, with
  independent parameters per sample (torchvision would apply one parameter set to a batched tensor). On CPU at
  32x32 this is 3-4x faster than a per-image torchvision loop; at 224x224 per-image torchvision is faster.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import kornia.augmentation as K
import torch
from torch import Tensor, nn
from torchvision.transforms import v2

__all__ = [
    "DeviceViewAugment",
    "ExConTransform",
    "TwoCropTransform",
    "standard_view",
    "supcon_random_view",
    "unnormalize",
]

# SupContrast's augmentation strengths (also used by ExCon).
CROP_SCALE = (0.2, 1.0)
JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
JITTER_P = 0.8
GRAYSCALE_P = 0.2


def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (square output side), got {size!r}")
    return size


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean and std must have one value per channel, got {len(mean)} and {len(std)} values")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std}")
    return mean, std


def _check_crop_scale(crop_scale: Sequence[float]) -> tuple[float, float]:
    scale = tuple(float(v) for v in crop_scale)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"crop_scale must be (low, high) area fractions with 0 < low <= high <= 1, got {crop_scale!r}")
    return scale[0], scale[1]


def supcon_random_view(
    size: int, mean: Sequence[float], std: Sequence[float], *, crop_scale: Sequence[float] = CROP_SCALE,
    colour: bool = True,
) -> v2.Compose:
    """Per-image random view: PIL image or ``(3, H, W)`` tensor (uint8, or float in ``[0, 1]``) ->
    normalised float32 ``(3, size, size)`` plain tensor.

    Args:
        size: output side.
        mean: per-channel normalisation means (e.g. :func:`exaug.data.dataset_stats`).
        std: the matching per-channel standard deviations.
        crop_scale: area range of the random resized crop, as fractions of the image (SupContrast: 0.2-1).
        colour: apply the colour jitter (p 0.8) and grayscale (p 0.2); ``False`` keeps the colours, a lighter view
            for small budgets (``TrainConfig.view_colour``).
    """
    size = _check_size(size)
    mean, std = _check_stats(mean, std)
    colour_ops = [v2.RandomApply([v2.ColorJitter(*JITTER)], p=JITTER_P), v2.RandomGrayscale(p=GRAYSCALE_P)]
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=_check_crop_scale(crop_scale), antialias=True),
            v2.RandomHorizontalFlip(),
            *(colour_ops if colour else []),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
            v2.ToPureTensor(),
        ]
    )


def standard_view(size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Resize to ``(size, size)`` and normalise: PIL image or ``(3, H, W)`` tensor -> float32 ``(3, size, size)``.

    The resize is to a square (no crop), so the whole image is kept for the explanation; non-square images are
    stretched.
    """
    size = _check_size(size)
    mean, std = _check_stats(mean, std)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
            v2.ToPureTensor(),
        ]
    )


class TwoCropTransform:
    """Two independent draws of ``transform``: ``x -> [transform(x), transform(x)]`` (SupCon's dataset views)."""

    def __init__(self, transform: Callable[[Any], Tensor]) -> None:
        self.transform = transform

    def __call__(self, x: Any) -> list[Tensor]:
        return [self.transform(x), self.transform(x)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


class ExConTransform:
    """ExCon's three dataset views: ``x -> [standard(x), random(x), random(x)]``.

    The standard view is explained and masked; the first random view is the backup used when the masked image
    is misclassified, the second is always the other view of the pair.

    Args:
        random_transform: e.g. :func:`supcon_random_view`.
        standard_transform: e.g. :func:`standard_view`.
    """

    def __init__(self, random_transform: Callable[[Any], Tensor], standard_transform: Callable[[Any], Tensor]) -> None:
        self.random_transform = random_transform
        self.standard_transform = standard_transform

    def __call__(self, x: Any) -> list[Tensor]:
        return [self.standard_transform(x), self.random_transform(x), self.random_transform(x)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(random={self.random_transform!r}, standard={self.standard_transform!r})"


class DeviceViewAugment(nn.Module):
    """Batched random view with Kornia: ``(B, 3, H, W)`` float in ``[0, 1]`` -> normalised ``(B, 3, size, size)``.

    Same operations and strengths as :func:`supcon_random_view` (a Kornia ``AugmentationSequential``, then
    normalisation), with independent parameters per sample, run on the input's device; move the module with
    ``.to(device)`` like any other. Randomness comes from the global torch RNG (``torch.manual_seed`` makes it
    reproducible). Resizing is bilinear without antialiasing, so at large downscaling factors views are
    slightly sharper than torchvision's (identical when crops are upscaled, as at 32x32).

    Args:
        size: output side.
        mean: per-channel normalisation means.
        std: the matching per-channel standard deviations.
        crop_scale: area range of the random resized crop (as :func:`supcon_random_view`).
        colour: apply the colour jitter and grayscale (as :func:`supcon_random_view`).
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], *,
                 crop_scale: Sequence[float] = CROP_SCALE, colour: bool = True) -> None:
        super().__init__()
        size = _check_size(size)
        mean, std = _check_stats(mean, std)
        self.size = size
        colour_ops = [K.ColorJitter(*JITTER, p=JITTER_P), K.RandomGrayscale(p=GRAYSCALE_P)]
        self.augment = K.AugmentationSequential(
            K.RandomResizedCrop((size, size), scale=_check_crop_scale(crop_scale), align_corners=False),
            K.RandomHorizontalFlip(),
            *(colour_ops if colour else []),
        )
        # Normalisation constants as buffers (rather than K.Normalize, which copies them to the input's device
        # on every call): they move once with .to(device). Not persistent: they come from the configuration.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float in ``[0, 1]`` -> ``(B, 3, size, size)``, normalised."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"images must be a float (B, 3, H, W) batch in [0, 1], got {tuple(images.shape)} {images.dtype}"
            )
        return (self.augment(images) - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"size={self.size}"


def unnormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Invert ``Normalize`` for display: ``x * std + mean`` over the channel dimension.

    Args:
        x: ``(C, H, W)`` or ``(B, C, H, W)``.
        mean: the per-channel values used to normalise.
        std: the matching per-channel standard deviations.

    Returns:
        Tensor of the shape of ``x`` (not clamped).
    """
    mean, std = _check_stats(mean, std)
    if x.dim() < 3 or x.shape[-3] != len(mean):
        raise ValueError(f"x must be (C, H, W) or (B, C, H, W) with C={len(mean)}, got shape {tuple(x.shape)}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x * s + m
