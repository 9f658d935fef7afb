"""Replayable spatial transforms: draw random crop/flip parameters once, apply them to images *and* heatmaps.

CGC (seed 003) compares the Grad-CAM map of an augmented view with the map of the original pushed through the
*same* geometric transform. Kornia separates random parameter generation (``forward_parameters``) from the
deterministic application (``module(x, params=...)``, NOTES §9), so the parameters drawn for a batch of images
can be replayed exactly on a batch of heatmaps. Heatmaps are resampled bilinearly like the images (never
nearest: saliency is continuous), which keeps the transform differentiable for the heatmaps' autograd graph.
"""

from __future__ import annotations

import dataclasses
import torch
from torch import Tensor, nn

__all__ = ["SpatialParams", "ReplayableSpatial"]


@dataclasses.dataclass
class SpatialParams:
    """Per-sample parameters of one :class:`ReplayableSpatial` draw.

    Attributes:
        crop: kornia ``RandomResizedCrop`` parameters (``src``/``dst`` boxes ``(B, 4, 2)`` in pixels, ...).
        flip: kornia ``RandomHorizontalFlip`` parameters (``batch_prob`` ``(B,)``: 1 where flipped).
        batch_size: ``B``.
        input_size: ``(H, W)`` the parameters were drawn for.
    """

    crop: dict[str, Tensor]
    flip: dict[str, Tensor]
    batch_size: int
    input_size: tuple[int, int]

    @property
    def flipped(self) -> Tensor:
        """``(B,)`` bool, samples that were flipped."""
        return self.flip["batch_prob"] > 0.5


class ReplayableSpatial(nn.Module):
    """RandomResizedCrop + horizontal flip whose per-sample parameters can be replayed on other tensors.

    Example:
        >>> import torch
        >>> images, heatmaps = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
        >>> spatial = ReplayableSpatial(scale=(0.08, 1.0))
        >>> augmented, params = spatial(images)        # new parameters per sample
        >>> moved = spatial.apply(heatmaps, params)    # through the same crops and flips
        >>> augmented.shape, moved.shape
        (torch.Size([2, 3, 16, 16]), torch.Size([2, 1, 16, 16]))

    Args:
        size: output ``(H', W')`` (an int for squares); ``None``: the input's own size (CGC resizes the crop back).
        scale: range of the crop area as a fraction of the image (CGC: ``(0.08, 1)``).
        ratio: range of the crop aspect ratio.
        flip_p: probability of a horizontal flip.

    Shape:
        - input: ``(B, C, H, W)``; :meth:`apply` takes any channel count ``(B, C', H, W)``.
        - output: ``(B, C, H', W')`` (``(H, W)`` when ``size`` is ``None``).
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        flip_p: float = 0.5,
    ) -> None:
        super().__init__()
        if not (len(scale) == 2 and 0.0 < scale[0] <= scale[1] <= 1.0):
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {scale}")
        if not (len(ratio) == 2 and 0.0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.flip_p = float(flip_p)
        self._crops: dict[tuple[int, int], nn.Module] = {}
        import kornia.augmentation as K

        self._flip = K.RandomHorizontalFlip(p=self.flip_p)

    def _crop(self, input_size: tuple[int, int]) -> nn.Module:
        """The kornia crop module for an input size (one per output size; bilinear resampling)."""
        out = self.size or input_size
        if out not in self._crops:
            import kornia.augmentation as K

            self._crops[out] = K.RandomResizedCrop(out, scale=self.scale, ratio=self.ratio, resample="bilinear")
        return self._crops[out]

    def sample(self, images: Tensor) -> SpatialParams:
        """Draw per-sample parameters for ``images`` ``(B, C, H, W)`` (uses the global torch RNG)."""
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must have shape (B, C, H, W), got {shape}")
        input_size = (images.shape[-2], images.shape[-1])
        crop = self._crop(input_size).forward_parameters(images.shape)
        flip = self._flip.forward_parameters(images.shape)
        return SpatialParams(crop=crop, flip=flip, batch_size=images.shape[0], input_size=input_size)

    def apply(self, x: Tensor, params: SpatialParams) -> Tensor:
        """Apply drawn parameters to ``x`` ``(B, C', H, W)`` (images or heatmaps, any channel count).

        Bilinear resampling, differentiable with respect to ``x``. ``x`` must have the batch size and spatial
        size the parameters were drawn for (upsample low-resolution maps first).
        """
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, C, H, W), got {shape}")
        if x.shape[0] != params.batch_size or tuple(x.shape[-2:]) != params.input_size:
            raise ValueError(
                f"x {tuple(x.shape)} does not match the parameters, drawn for batch {params.batch_size} and size "
                f"{params.input_size}: replay needs the same batch and spatial size (upsample heatmaps first)"
            )
        shape = torch.tensor(x.shape, device=params.crop["forward_input_shape"].device)
        # kornia records the input shape it drew for; the channel count may differ between images and heatmaps.
        crop_params = {**params.crop, "forward_input_shape": shape}
        flip_params = {**params.flip, "forward_input_shape": shape}
        out = self._crop(params.input_size)(x, params=crop_params)
        return self._flip(out, params=flip_params)

    def forward(self, images: Tensor) -> tuple[Tensor, SpatialParams]:
        """Draw parameters and transform ``images``; returns ``(transformed, params)`` for later replay."""
        params = self.sample(images)
        return self.apply(images, params), params

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={tuple(round(r, 4) for r in self.ratio)}, " \
               f"flip_p={self.flip_p}"
