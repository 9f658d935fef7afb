"""``SaliencyKeep``: the explanation keep-mask as a kornia augmentation, after the geometry of a pipeline.

Why the saliency travels as an extra *input channel* rather than as a ``"mask"`` data key: kornia 0.9's
``AugmentationSequential`` hands each child one data key at a time (the ``"input"`` first, then each
``"mask"``), and the only child that may read several keys at once is hard-wired to ``RandomTransplantation``.
A child therefore cannot threshold the mask and apply it to the image in the same step. Stacked as the last
channel of the input, the saliency goes through every geometric child with the image's own parameters *and*
its bilinear resampling (NOTES §5: never nearest for saliency), and :class:`SaliencyKeep` splits it off,
thresholds it exactly like :func:`~exaug.augment.keep_mask` and masks the image. Other ``"mask"``, box or
keypoint keys of the pipeline are unaffected.

Place :class:`SaliencyKeep` after the geometric transforms and before any intensity transform (colour jitter
would otherwise treat the saliency as a colour channel, or reject ``C + 1`` channels). Per-sample intensity
transforms may follow it in the same pipeline (colour jitter, grayscale, normalise: SupCon's recipe). Kornia
tracks only spatial size changes when it draws a pipeline's parameters, not channel counts, so a child drawing
per-channel parameters (``RandomGaussianNoise``) after it would draw ``C + 1`` channels: put such children in a
second pipeline.
"""

from __future__ import annotations

from typing import Any

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from torch import Tensor

from .masking import Fill, apply_mask, check_fill, keep_mask

__all__ = ["SaliencyKeep"]


class SaliencyKeep(IntensityAugmentationBase2D):
    """Keep the pixels whose (geometrically transformed) saliency passes the rule; fill the others.

    The input is the image batch with its saliency stacked as the last channel (:meth:`stack`); the output is
    the masked image without that channel. The keep decision is taken on the map as it arrives, i.e. after the
    crops, flips and warps before it in the pipeline (with the ``"threshold"`` rule a map is not renormalised
    after a crop: a threshold of 0.5 still means half of the original map's range). Pixels that a geometric
    transform filled from outside the image carry saliency 0 and are dropped.

    Always applied (``p = 1``). ``fill="noise"`` draws its noise as a kornia parameter (``params["noise"]``, from
    torch's global RNG like every kornia draw), so ``module(x, params=module._params)`` replays it exactly.

    Example:
        >>> import torch
        >>> import kornia.augmentation as K
        >>> _ = torch.manual_seed(0)
        >>> images, saliency = torch.randn(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
        >>> pipeline = K.AugmentationSequential(
        ...     K.RandomResizedCrop((16, 16), scale=(0.5, 1.0)), K.RandomHorizontalFlip(), SaliencyKeep(threshold=0.5)
        ... )
        >>> out = pipeline(SaliencyKeep.stack(images, saliency))
        >>> out.shape
        torch.Size([2, 3, 16, 16])

    Args:
        threshold: keep pixels whose saliency is above this value (as :func:`~exaug.augment.keep_mask`).
        keep_fraction: keep exactly this fraction of the most salient pixels instead (replaces ``threshold``).
        fill: value of dropped pixels: ``"zero"``, ``"mean"``, ``"blur"``, ``"noise"`` or a number (see
            :func:`~exaug.augment.fill_like`; ``"mean"`` and ``"blur"`` are of the transformed image).

    Shape:
        - input: ``(B, C + 1, H, W)``, the saliency (normalised to ``[0, 1]``, or a 0/1 keep-mask) last.
        - output: ``(B, C, H, W)``.
    """

    def __init__(self, threshold: float = 0.5, keep_fraction: float | None = None, fill: Fill | float = "zero") -> None:
        super().__init__(p=1.0, same_on_batch=False, keepdim=False)
        # Validate the rule now rather than at the first batch.
        keep_mask(torch.zeros(1, 1, 1, 1), threshold=threshold, keep_fraction=keep_fraction)
        self.threshold = threshold
        self.keep_fraction = keep_fraction
        self.fill = check_fill(fill)
        self.flags = {"threshold": threshold, "keep_fraction": keep_fraction, "fill": fill}

    @staticmethod
    def stack(images: Tensor, saliency: Tensor) -> Tensor:
        """The pipeline input: ``images`` with ``saliency`` as an extra last channel (cast to their dtype).

        Shape:
            - images: ``(B, C, H, W)``; saliency: ``(B, 1, H, W)`` (float or bool).
            - output: ``(B, C + 1, H, W)``.
        """
        if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
            desc = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a floating point (B, C, H, W) tensor, got {desc}")
        expected = (images.shape[0], 1, *images.shape[-2:])
        if not isinstance(saliency, Tensor) or saliency.shape != expected:
            shape = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
            raise ValueError(f"saliency must have shape (B, 1, H, W) = {expected}, got {shape}")
        return torch.cat((images, saliency.to(images.dtype)), dim=1)

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, Tensor]:
        if self.fill != "noise":
            return {}
        b, c, h, w = batch_shape
        # Drawn with the parameters (kornia's habit), so a replay with params= reuses the same noise.
        return {"noise": torch.randn((b, c - 1, h, w), device=self.device, dtype=self.dtype)}

    def apply_transform(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        if input.shape[1] < 2:
            raise ValueError(f"SaliencyKeep expects images with the saliency as an extra last channel "
                             f"(B, C + 1, H, W) with C >= 1 (see SaliencyKeep.stack), got {tuple(input.shape)}")
        images, saliency = input[:, :-1], input[:, -1:]
        keep = keep_mask(saliency, threshold=flags["threshold"], keep_fraction=flags["keep_fraction"])
        fill = flags["fill"]
        if fill == "noise":
            fill = params["noise"].to(device=images.device, dtype=images.dtype)
        return apply_mask(images, keep, fill)
