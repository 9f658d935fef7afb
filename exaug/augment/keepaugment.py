"""KeepAugment (Gong et al., CVPR 2021): keep the salient region intact through Cutout or AutoAugment.

* :class:`KeepCutout`: the Cutout box is redrawn until the mean saliency inside it is below ``threshold``, so the
  cut never removes the object's evidence.
* :class:`KeepAutoAugment`: after AutoAugment (torchvision v2, CIFAR-10 policy) a box whose maximum saliency
  reaches ``threshold`` is pasted back from the original image.

Defaults follow the public port of the paper (cjf8899/KeepAugment_Pytorch): vanilla gradient saliency
(``"saliency"``), per-sample min-max normalised; box side 16 (CIFAR Cutout); ``threshold = 0.6``. The port
redraws in an unbounded per-image loop; here ``trials`` candidate boxes per image are drawn at once (batched) and
the first one that satisfies the rule is used; if none does, the best candidate (lowest mean / highest max). The
paper's cheap option, ``low_resolution=True``, explains the image at half resolution and upsamples the map.

The saliency uses the model passed at call time in eval mode without touching it (the port switches the model
to eval and back to train and flips ``requires_grad`` on every parameter).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explainers.base import Explainer, upsample_bilinear
from .explaining import SaliencyFn
from .mixing import MixAugment, MixParams, SaliencySource, random_ints

__all__ = ["KeepCutout", "KeepAutoAugment", "candidate_boxes"]


def candidate_boxes(length: int, trials: int, batch: int, height: int, width: int,
                    generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``(B, T, 4)`` Cutout boxes ``(y1, x1, y2, x2)``: centres uniform (rows drawn first, then columns), side
    ``length``, clipped to the image (Cutout's public code)."""
    cy = random_ints(height, (batch, trials), generator, device)
    cx = random_ints(width, (batch, trials), generator, device)
    half = length // 2
    return torch.stack(((cy - half).clamp(0, height), (cx - half).clamp(0, width),
                        (cy + half).clamp(0, height), (cx + half).clamp(0, width)), dim=-1)


def _trial_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    rows = torch.arange(height, device=boxes.device).view(1, 1, height, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, 1, width)
    y1, x1, y2, x2 = (boxes[..., i, None, None] for i in range(4))
    return (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)


class _KeepBase(MixAugment):
    def __init__(self, num_classes: int, explainer: str | Explainer | SaliencyFn, length: int, threshold: float,
                 trials: int, low_resolution: bool, explainer_options: Mapping[str, Any] | None) -> None:
        super().__init__(num_classes)
        if not isinstance(length, int) or length < 2:
            raise ValueError(f"length must be an int >= 2, got {length!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] (normalised saliency), got {threshold}")
        if not isinstance(trials, int) or trials < 1:
            raise ValueError(f"trials must be a positive int, got {trials!r}")
        self.saliency = SaliencySource(explainer, explainer_options)
        self.length, self.threshold, self.trials = length, float(threshold), trials
        self.low_resolution = bool(low_resolution)

    def _saliency(self, images: Tensor, labels: Tensor, model: nn.Module | None,
                  generator: torch.Generator | None) -> Tensor:
        if not self.low_resolution:
            return self.saliency.maps(images, labels, model, generator)[0]
        small = F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False)
        sal, _ = self.saliency.maps(small, labels, model, generator)
        return upsample_bilinear(sal, images.shape[-2:])

    def _choose(self, images: Tensor, labels: Tensor, model: nn.Module | None, generator: torch.Generator | None,
                keep_low: bool) -> tuple[Tensor, Tensor]:
        """Box masks ``(B, 1, H, W)`` chosen among the trials, and the maps."""
        b, _, h, w = images.shape
        boxes = candidate_boxes(self.length, self.trials, b, h, w, generator, images.device)
        saliency = self._saliency(images, labels, model, generator)
        masks = _trial_masks(boxes, h, w)  # (B, T, H, W)
        inside = saliency * masks
        if keep_low:
            score = inside.flatten(2).sum(2) / masks.flatten(2).sum(2).clamp_min(1)
            ok, best = score < self.threshold, score.argmin(dim=1)
        else:
            score = inside.flatten(2).amax(2)
            ok, best = score >= self.threshold, score.argmax(dim=1)
        # First satisfying trial (argmax of a 0/1 row returns the first 1), else the best one.
        first = ok.to(torch.uint8).argmax(dim=1)
        pick = torch.where(ok.any(dim=1), first, best)
        chosen = masks[torch.arange(b, device=images.device), pick]
        return chosen.unsqueeze(1), saliency

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, explainer={self.saliency.name!r}, length={self.length}, " \
               f"threshold={self.threshold}, trials={self.trials}, low_resolution={self.low_resolution}"


class KeepCutout(_KeepBase):
    """Cutout whose box avoids the salient region (mean normalised saliency in the box ``< threshold``).

    The cut pixels become 0 (the dataset mean in normalised space, as Cutout on normalised tensors). Labels are
    unchanged: ``weight_a = 1``, ``weight_b = 0``, partner = the image itself.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 3))
        >>> images, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 2])
        >>> cutout = KeepCutout(num_classes=3, length=8)
        >>> batch = cutout(images, labels, model, generator=torch.Generator().manual_seed(0))
        >>> [0 < int((row == 0).all(0).sum()) <= 64 for row in batch.images]   # one box of at most 8x8 cut
        [True, True]
        >>> batch.targets.tolist()                                  # labels unchanged
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]

    Args:
        num_classes: ``K``.
        explainer: a registered name (default vanilla gradient), an Explainer, a callable or ``"random"``.
        length: box side (16 for CIFAR).
        threshold: maximum mean saliency of the cut region.
        trials: candidate boxes per image.
        low_resolution: explain at half resolution (the paper's cheap variant).
        explainer_options: options of a named explainer.

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; output: :class:`~exaug.augment.MixedBatch`.
    """

    def __init__(self, num_classes: int, explainer: str | Explainer | SaliencyFn = "saliency", length: int = 16,
                 threshold: float = 0.6, trials: int = 10, low_resolution: bool = False,
                 explainer_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(num_classes, explainer, length, threshold, trials, low_resolution, explainer_options)

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Candidate boxes (from ``generator``), the saliency, then the first box below the threshold."""
        labels = self.check_inputs(images, labels)
        b = images.shape[0]
        box, saliency = self._choose(images, labels, model, generator, keep_low=True)
        ones = torch.ones(b, dtype=torch.float64, device=images.device)
        return MixParams(partner=torch.arange(b, device=images.device), mask=box, weight_a=ones,
                         weight_b=torch.zeros_like(ones), source=torch.zeros_like(images), saliency=saliency)


class KeepAutoAugment(_KeepBase):
    """AutoAugment (torchvision v2, CIFAR-10 policy), then the salient box (max saliency ``>= threshold``) of the
    original pasted back.

    AutoAugment needs pixel values: images are de-normalised with ``mean``/``std`` (``None``: already in
    ``[0, 1]``), quantised to uint8, augmented, and normalised again. torchvision applies one sub-policy per call,
    so the batch is split into ``policy_groups`` chunks with one draw each (a bounded loop over groups, never over
    samples; ``policy_groups = B`` gives every image its own sub-policy as the paper). Its random draws use torch's
    global RNG, seeded from ``generator`` inside ``torch.random.fork_rng`` so that draws are replayable and the
    caller's RNG state is untouched.

    Example:
        >>> import torch
        >>> images, labels = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
        >>> aug = KeepAutoAugment(num_classes=3, explainer="spectral_residual", length=8)
        >>> batch = aug(images, labels, generator=torch.Generator().manual_seed(0))
        >>> batch.images.shape, batch.targets.sum(1).tolist()
        (torch.Size([4, 3, 16, 16]), [1.0, 1.0, 1.0, 1.0])

    Args:
        num_classes: ``K``.
        explainer: a registered name (default vanilla gradient), an Explainer, a callable or ``"random"``.
        length: side of the kept box (16 for CIFAR).
        threshold: minimum max-saliency of the kept region.
        trials: candidate boxes per image.
        low_resolution: explain at half resolution.
        mean, std: per-channel normalisation of the images (``None``: images in ``[0, 1]``).
        policy_groups: AutoAugment draws per batch.
        explainer_options: options of a named explainer.

    Shape:
        - images: ``(B, C, H, W)`` with ``C`` = 3; labels: ``(B,)``; output: :class:`~exaug.augment.MixedBatch`.
    """

    def __init__(self, num_classes: int, explainer: str | Explainer | SaliencyFn = "saliency", length: int = 16,
                 threshold: float = 0.6, trials: int = 10, low_resolution: bool = False,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, policy_groups: int = 8,
                 explainer_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(num_classes, explainer, length, threshold, trials, low_resolution, explainer_options)
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        if not isinstance(policy_groups, int) or policy_groups < 1:
            raise ValueError(f"policy_groups must be a positive int, got {policy_groups!r}")
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.policy_groups = policy_groups
        from torchvision.transforms import v2

        self.autoaugment = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)

    def _stats(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.mean is None or self.std is None:
            return torch.zeros((), device=images.device), torch.ones((), device=images.device)
        return (torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1),
                torch.tensor(self.std, device=images.device).view(1, -1, 1, 1))

    def augmented(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """AutoAugment of ``images`` (normalised in, normalised out), one sub-policy draw per group."""
        mean, std = self._stats(images)
        pixels = ((images * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                 device=generator.device if generator is not None else images.device).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            chunks = [self.autoaugment(chunk) for chunk in pixels.tensor_split(self.policy_groups)]
        out = torch.cat(chunks).to(images.dtype) / 255.0
        return (out - mean) / std

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Candidate boxes, the saliency, the kept box, then the AutoAugment draw (all from ``generator``)."""
        labels = self.check_inputs(images, labels)
        b = images.shape[0]
        box, saliency = self._choose(images, labels, model, generator, keep_low=False)
        source = self.augmented(images.detach(), generator)
        ones = torch.ones(b, dtype=torch.float64, device=images.device)
        # Blend toward the augmented image everywhere except the kept box.
        return MixParams(partner=torch.arange(b, device=images.device), mask=~box, weight_a=ones,
                         weight_b=torch.zeros_like(ones), source=source, saliency=saliency)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, policy_groups={self.policy_groups}"
