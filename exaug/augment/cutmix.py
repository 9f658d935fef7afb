"""The random baselines of the mixing family: :class:`CutMix` (Yun et al. 2019) and :class:`Mixup` (Zhang et al.
2018), in the :class:`~exaug.augment.mixing.MixAugment` interface (per-sample ``lam``, boxes and partners)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mixing import MixAugment, MixParams, box_area, box_mask, cut_boxes, random_ints, random_permutation, sample_beta

__all__ = ["CutMix", "Mixup"]


class _BetaMix(MixAugment):
    """A random mix whose ratio ``lam`` is drawn from ``Beta(alpha, alpha)`` per sample."""

    def __init__(self, num_classes: int, alpha: float = 1.0) -> None:
        super().__init__(num_classes)
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}"


class CutMix(_BetaMix):
    """CutMix: paste a random box of a partner image; labels mixed by the pasted area.

    Per sample: ``lam ~ Beta(alpha, alpha)`` (paper and public code: ``alpha = 1``), a box of side
    ``int(S * sqrt(1 - lam))`` centred uniformly at random, the partner from a batch permutation; ``weight_b`` is
    the clipped box area over ``H * W``. The public code draws one ``lam`` and one box per batch; here each sample
    draws its own (same distribution per sample).

    Example:
        >>> import torch
        >>> images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> batch = CutMix(num_classes=4)(images, labels, generator=torch.Generator().manual_seed(0))
        >>> batch.images.shape, torch.allclose(batch.targets.sum(1), torch.ones(4))
        (torch.Size([4, 3, 8, 8]), True)

    Args:
        num_classes: ``K``.
        alpha: Beta parameter of ``lam``.

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; output: :class:`~exaug.augment.MixedBatch`.
    """

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Partners, ``lam``, box centres (in that order from ``generator``); the model is not used."""
        self.check_inputs(images, labels)
        b, _, h, w = images.shape
        dev = images.device
        partner = random_permutation(b, generator, dev)
        lam = sample_beta(self.alpha, b, generator, dev)
        cy = random_ints(h, (b,), generator, dev)
        cx = random_ints(w, (b,), generator, dev)
        boxes = cut_boxes(lam, cy, cx, h, w)
        weight_b = box_area(boxes).double() / (h * w)
        return MixParams(partner=partner, mask=box_mask(boxes, h, w), weight_a=1.0 - weight_b, weight_b=weight_b)


class Mixup(_BetaMix):
    """Mixup: ``lam * x + (1 - lam) * x_partner``, labels ``lam`` / ``1 - lam``, ``lam ~ Beta(alpha, alpha)``
    per sample (the paper's CIFAR setting: ``alpha = 1``).

    Example:
        >>> import torch
        >>> images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> batch = Mixup(num_classes=4)(images, labels, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(batch.weight_a + batch.weight_b, torch.ones(4))
        True

    Args and shapes: as :class:`CutMix`.
    """

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Partners then ``lam`` from ``generator``; the model is not used."""
        self.check_inputs(images, labels)
        b = images.shape[0]
        partner = random_permutation(b, generator, images.device)
        lam = sample_beta(self.alpha, b, generator, images.device)
        return MixParams(partner=partner, mask=(1.0 - lam).view(b, 1, 1, 1), weight_a=lam, weight_b=1.0 - lam)
