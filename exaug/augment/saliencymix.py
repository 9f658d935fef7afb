"""``SaliencyMix`` (Uddin et al., ICLR 2021): CutMix whose box is centred on the partner's saliency peak."""

from __future__ import annotations

from typing import Any, Literal, Mapping

import torch
from torch import Tensor, nn

from ..explainers.base import Explainer
from .explaining import SaliencyFn
from .mixing import MixAugment, MixParams, SaliencySource, box_area, box_mask, cut_boxes, random_permutation, sample_beta

__all__ = ["SaliencyMix"]


class SaliencyMix(MixAugment):
    """Paste a box of the partner image centred on the partner's most salient pixel; labels mixed by area.

    Per sample: partner from a batch permutation, ``lam ~ Beta(alpha, alpha)`` (paper: ``alpha = 1``), the box of
    side ``int(S * sqrt(1 - lam))`` centred at the argmax of the partner's saliency (first pixel in row-major
    order on ties), clipped, pasted at the same place; ``weight_b`` = clipped area / ``H * W``. The official code
    explains only the first partner of the batch and uses its peak for every sample: ``peak="batch"``.

    The official code's saliency is OpenCV's fine-grained static saliency; exaug's model-free default is
    ``"spectral_residual"`` (OpenCV's other static saliency); any explainer works. ``explainer="random"`` makes the
    peak a uniformly random pixel: plain CutMix (per-sample boxes).

    Example:
        >>> import torch
        >>> images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
        >>> mix = SaliencyMix(num_classes=4)                      # spectral residual: no model needed
        >>> params = mix.draw(images, labels, generator=torch.Generator().manual_seed(0))
        >>> batch = mix(images, labels, params=params)
        >>> batch.targets.shape, torch.allclose(batch.targets.sum(1), torch.ones(4))
        (torch.Size([4, 4]), True)

    Args:
        num_classes: ``K``.
        explainer: a registered name, an :class:`~exaug.explainers.Explainer`, ``f(images, targets)``, or
            ``"random"`` (the CutMix control).
        alpha: Beta parameter of ``lam``.
        peak: ``"sample"`` (each partner's own peak) or ``"batch"`` (the first partner's peak for all, as the
            official code).
        explainer_options: options of a named explainer.

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; output: :class:`~exaug.augment.MixedBatch`.
    """

    def __init__(self, num_classes: int, explainer: str | Explainer | SaliencyFn = "spectral_residual",
                 alpha: float = 1.0, peak: Literal["sample", "batch"] = "sample",
                 explainer_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(num_classes)
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if peak not in ("sample", "batch"):
            raise ValueError(f"peak must be 'sample' or 'batch', got {peak!r}")
        self.saliency = SaliencySource(explainer, explainer_options)
        self.alpha = float(alpha)
        self.peak = peak

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Partners, ``lam`` (from ``generator``), then the partners' saliency peaks.

        Args:
            images: the batch.
            labels: class indices (the explained targets).
            model: images -> logits for model-based explainers (left untouched); ``None`` for model-free ones.
            generator: random source (``None``: the global RNG); ``"random"`` maps are drawn last.
        """
        labels = self.check_inputs(images, labels)
        b, _, h, w = images.shape
        dev = images.device
        partner = random_permutation(b, generator, dev)
        lam = sample_beta(self.alpha, b, generator, dev)
        explained = images.index_select(0, partner[:1]) if self.peak == "batch" else images.index_select(0, partner)
        targets = labels.index_select(0, partner[: explained.shape[0]])
        saliency, _ = self.saliency.maps(explained, targets, model, generator)
        # A flat map has all zeros: its argmax is pixel 0, as np.argmax of the official code.
        peak = saliency.flatten(1).argmax(dim=1).expand(b)
        boxes = cut_boxes(lam, peak // w, peak % w, h, w)
        weight_b = box_area(boxes).double() / (h * w)
        full = saliency.expand(b, -1, -1, -1) if self.peak == "batch" else saliency
        return MixParams(partner=partner, mask=box_mask(boxes, h, w), weight_a=1.0 - weight_b, weight_b=weight_b,
                         saliency=full)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, explainer={self.saliency.name!r}, alpha={self.alpha}, " \
               f"peak={self.peak!r}"
