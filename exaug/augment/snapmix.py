"""``SnapMix`` (Huang et al., AAAI 2021): asymmetric boxes, labels weighted by the saliency mass they move."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..explainers.base import Explainer
from .explaining import SaliencyFn
from .mixing import (MixAugment, MixParams, SaliencySource, box_area, box_mask, cut_boxes, random_ints,
                     random_permutation, sample_beta)

__all__ = ["SnapMix", "box_warp_grid"]

#: Boxes of at most this many pixels are not mixed (the public code's ``area > 4`` guard).
MIN_BOX_AREA = 4


def box_warp_grid(dst: Tensor, src: Tensor, height: int, width: int) -> Tensor:
    """Sampling grid that maps box ``dst`` of the output onto box ``src`` of the source, per sample.

    Inside ``dst`` the result equals cropping ``src`` and resizing it to the size of ``dst`` with
    ``F.interpolate(mode="bilinear", align_corners=True)`` (SnapMix's public code); outside it is the identity.

    Args:
        dst, src: ``(B, 4)`` int64 boxes ``(y1, x1, y2, x2)``, non-empty.
        height, width: image size.

    Returns:
        ``(B, H, W, 2)`` grid for ``F.grid_sample(..., align_corners=True)``.
    """

    def axis(size: int, d0: Tensor, d1: Tensor, s0: Tensor, s1: Tensor) -> Tensor:
        pos = torch.arange(size, device=dst.device, dtype=torch.float64).unsqueeze(0)
        # align_corners=True: the first/last output pixels land on the first/last source pixels.
        step = (s1 - s0 - 1).double() / (d1 - d0 - 1).clamp_min(1).double()
        inside = (pos >= d0.unsqueeze(1)) & (pos < d1.unsqueeze(1))
        mapped = torch.where(inside, s0.unsqueeze(1) + (pos - d0.unsqueeze(1)) * step.unsqueeze(1), pos)
        return mapped * 2.0 / max(size - 1, 1) - 1.0

    gy = axis(height, dst[:, 0], dst[:, 2], src[:, 0], src[:, 2])
    gx = axis(width, dst[:, 1], dst[:, 3], src[:, 1], src[:, 3])
    b = dst.shape[0]
    return torch.stack((gx.unsqueeze(1).expand(b, height, width), gy.unsqueeze(2).expand(b, height, width)), dim=-1)


class SnapMix(MixAugment):
    """Cut box 1 of each image, paste the partner's box 2 resized into it; weight each label by its share of
    the saliency ("semantic percentage"):

    ``weight_a = 1 - sum(SPM_a in box 1)``, ``weight_b = sum(SPM_b in box 2)``, with ``SPM = map / sum(map)`` the
    class activation map normalised to mass 1 (the paper's CAM after min-shift, which equals exaug's min-max
    normalised map divided by its sum). Per sample: partner from a permutation, ``lam_1, lam_2 ~ Beta(alpha,
    alpha)`` (public code: ``alpha = 5``), two independent CutMix boxes (asymmetric, as the paper). Boxes of at most
    4 pixels leave the image unmixed (public code). A flat map falls back to area weights (the public code's NaN
    fallback). When both labels are equal the soft target adds the two weights on that class (the paper's intent;
    the public code instead adds each weight to the other, doubling the loss).

    The weights do not sum to 1 in general (paper); ``normalize_weights=True`` rescales them to sum 1.
    ``explainer="random"`` uses area weights: the asymmetric random-box counterpart.

    Example:
        >>> import torch
        >>> images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
        >>> mix = SnapMix(num_classes=4, explainer="spectral_residual", normalize_weights=True)
        >>> batch = mix(images, labels, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(batch.targets.sum(1), torch.ones(4))
        True

    Args:
        num_classes: ``K``.
        explainer: a registered name (paper: CAM = ``"gradcam"`` at the last layer), an
            :class:`~exaug.explainers.Explainer`, ``f(images, targets)`` or ``"random"``.
        alpha: Beta parameter of the two box ratios.
        normalize_weights: rescale the two weights to sum 1.
        explainer_options: options of a named explainer.

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; output: :class:`~exaug.augment.MixedBatch`.
    """

    def __init__(self, num_classes: int, explainer: str | Explainer | SaliencyFn = "gradcam", alpha: float = 5.0,
                 normalize_weights: bool = False, explainer_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(num_classes)
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.saliency = SaliencySource(explainer, explainer_options)
        self.alpha = float(alpha)
        self.normalize_weights = bool(normalize_weights)

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Partners, ``lam_1``, ``lam_2``, centres of box 1 then box 2 (from ``generator``), then the saliency of
        every image for its own label.

        Args:
            images: the batch.
            labels: class indices (the explained targets).
            model: images -> logits for model-based explainers, untouched.
            generator: random source (``None``: the global RNG).
        """
        labels = self.check_inputs(images, labels)
        b, _, h, w = images.shape
        dev = images.device
        partner = random_permutation(b, generator, dev)
        lam_1 = sample_beta(self.alpha, b, generator, dev)
        lam_2 = sample_beta(self.alpha, b, generator, dev)
        cy1, cx1 = random_ints(h, (b,), generator, dev), random_ints(w, (b,), generator, dev)
        cy2, cx2 = random_ints(h, (b,), generator, dev), random_ints(w, (b,), generator, dev)
        box_1 = cut_boxes(lam_1, cy1, cx1, h, w)
        box_2 = cut_boxes(lam_2, cy2, cx2, h, w)
        mixed = (box_area(box_1) > MIN_BOX_AREA) & (box_area(box_2) > MIN_BOX_AREA)
        in_1 = box_mask(box_1, h, w) & mixed.view(b, 1, 1, 1)
        in_2 = box_mask(box_2, h, w)
        area_1 = in_1.flatten(1).sum(1).double() / (h * w)
        area_2 = box_area(box_2).double() / (h * w) * mixed
        if self.saliency.is_random:
            saliency = torch.full((b, 1, h, w), 1.0 / (h * w), device=dev)
            flat = torch.zeros(b, dtype=torch.bool, device=dev)
        else:
            saliency, flat = self.saliency.maps(images, labels, model, generator)
        mass = saliency.double().flatten(1)
        spm = mass / mass.sum(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        weight_a = torch.where(flat, 1.0 - area_1, 1.0 - (spm * in_1.flatten(1)).sum(1))
        spm_b, flat_b = spm.index_select(0, partner), flat.index_select(0, partner)
        weight_b = torch.where(flat_b, area_2, (spm_b * in_2.flatten(1)).sum(1) * mixed)
        if self.normalize_weights:
            total = weight_a + weight_b
            weight_a, weight_b = torch.where(total > 0, weight_a / total.clamp_min(1e-12), 1.0), \
                torch.where(total > 0, weight_b / total.clamp_min(1e-12), 0.0)
        safe_1 = torch.where(mixed.unsqueeze(1), box_1, torch.tensor([0, 0, 2, 2], device=dev))
        grid = box_warp_grid(safe_1, box_2, h, w)
        return MixParams(partner=partner, mask=in_1, weight_a=weight_a, weight_b=weight_b, grid=grid,
                         saliency=saliency)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, explainer={self.saliency.name!r}, alpha={self.alpha}, " \
               f"normalize_weights={self.normalize_weights}"
