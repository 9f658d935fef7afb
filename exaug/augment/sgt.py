"""Saliency-guided training (Ismail et al., NeurIPS 2021): mask the least salient features with random values.

:class:`SaliencyGuidedMask` replaces the ``fraction`` least salient pixels (all channels) of each image by
uniform random values in that image's ``[min, max]`` (the public code's ``RandomMasking``); :func:`sgt_loss` is the
paper's objective ``CE(f(x), y) + lam * KL(softmax f(x) || softmax f(masked x))`` (``batchmean``; the KL target
is not detached, as the public code). Defaults from the public code's CIFAR-10 script: ``fraction = 0.1``
(``--featuresDroped``), ``lam = 1``, plain gradient saliency. The public code ranks the channel-mean signed
gradient (``--abs`` off); exaug's default ``"saliency"`` explainer ranks the gradient magnitude summed over
channels, a documented difference (pass a callable for the signed variant).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explainers.base import Explainer
from .edda import TIE_BREAK
from .explaining import SaliencyFn
from .masking import keep_mask
from .mixing import MixAugment, MixParams, SaliencySource

__all__ = ["SaliencyGuidedMask", "sgt_loss"]


def sgt_loss(logits: Tensor, masked_logits: Tensor, labels: Tensor, lam: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Saliency-guided training objective.

    Args:
        logits: logits of the clean images.
        masked_logits: logits of the masked images.
        labels: class indices.
        lam: weight of the KL term.

    Returns:
        ``(loss, ce, kl)`` scalars, ``loss = ce + lam * kl``.

    Shape:
        - logits, masked_logits: ``(B, K)``; labels: ``(B,)``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> loss, ce, kl = sgt_loss(logits, logits, torch.tensor([0, 1]))
        >>> abs(float(kl)) < 1e-6, bool(torch.isclose(loss, ce))
        (True, True)
    """
    ce = F.cross_entropy(logits, labels)
    kl = F.kl_div(F.log_softmax(masked_logits, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return ce + lam * kl, ce, kl


class SaliencyGuidedMask(MixAugment):
    """The masked input of saliency-guided training.

    The ``round(fraction * H * W)`` least salient pixels of each image (ties broken at random, flat maps thus
    mask random pixels) take uniform random values in ``[min, max]`` of that image, on every channel. Labels are
    unchanged (``weight_a = 1``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 3))
        >>> images, labels = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
        >>> batch = SaliencyGuidedMask(num_classes=3, fraction=0.25)(images, labels, model)
        >>> [int((row != img).any(0).sum()) for row, img in zip(batch.images, images)]   # 16 of 64 pixels
        [16, 16]

    Args:
        num_classes: ``K``.
        explainer: a registered name (default: gradient magnitude), an Explainer, a callable or ``"random"``.
        fraction: share of pixels masked (public code, CIFAR-10: 0.1).
        explainer_options: options of a named explainer.

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; output: :class:`~exaug.augment.MixedBatch`.
    """

    def __init__(self, num_classes: int, explainer: str | Explainer | SaliencyFn = "saliency",
                 fraction: float = 0.1, explainer_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(num_classes)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.saliency = SaliencySource(explainer, explainer_options)
        self.fraction = float(fraction)

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """The saliency, then the tie-break noise and the random values (from ``generator``)."""
        labels = self.check_inputs(images, labels)
        b = images.shape[0]
        saliency, _ = self.saliency.maps(images, labels, model, generator)
        dev = generator.device if generator is not None else images.device
        noise = torch.rand(saliency.shape, generator=generator, device=dev).to(images.device)
        masked = keep_mask(-(saliency + noise * TIE_BREAK), keep_fraction=self.fraction)
        lo = images.detach().flatten(1).amin(1).view(b, 1, 1, 1)
        hi = images.detach().flatten(1).amax(1).view(b, 1, 1, 1)
        uniform = torch.rand(images.shape, generator=generator, device=dev, dtype=images.dtype).to(images.device)
        ones = torch.ones(b, dtype=torch.float64, device=images.device)
        return MixParams(partner=torch.arange(b, device=images.device), mask=masked, weight_a=ones,
                         weight_b=torch.zeros_like(ones), source=lo + uniform * (hi - lo), saliency=saliency)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, explainer={self.saliency.name!r}, fraction={self.fraction}"
