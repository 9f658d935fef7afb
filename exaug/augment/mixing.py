"""Shared machinery of the mixing family (CutMix, Mixup, SaliencyMix, Attentive CutMix, SnapMix, KeepAugment).

**One output convention for every mix**: a :class:`MixedBatch` with the mixed images, the two label vectors and
their per-sample weights, and the soft targets ``targets = weight_a * one_hot(labels_a) + weight_b *
one_hot(labels_b)`` of shape ``(B, K)``, used as ``F.cross_entropy(logits, batch.targets)``. That soft
cross-entropy equals the papers' ``weight_a * CE(y_a) + weight_b * CE(y_b)``. Rows sum to ``weight_a +
weight_b``, which is 1 for every method except SnapMix with its paper default (its semantic weights do not sum to
1; ``normalize_weights=True`` makes them).

**One interface** (:class:`MixAugment`): :meth:`~MixAugment.draw` decides everything random or saliency-driven
(partner permutation, regions, weights) into a :class:`MixParams`; :meth:`~MixAugment.apply` only blends
``images`` with their partners (``torch.lerp`` by a per-pixel partner weight), so replaying ``params`` gives
identical output. All randomness comes from the ``generator`` passed to ``draw`` (``None``: torch's global RNG).

Boxes follow CutMix's public code: side ``int(S * sqrt(1 - lam))``, centre uniform over the pixels, corners
``clip(centre -/+ side // 2, 0, S)``; ``lam`` is then recomputed from the clipped area.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explainers.base import Explainer, normalize_saliency, upsample_bilinear
from ..explainers.spectral_residual import spectral_residual
from ..utils.checks import check_images, check_labels
from .explaining import ExplainerSource, SaliencyFn, explain_normalized

__all__ = [
    "MixedBatch",
    "MixParams",
    "MixAugment",
    "SaliencySource",
    "sample_beta",
    "random_permutation",
    "random_ints",
    "cut_boxes",
    "box_mask",
    "box_area",
    "mix_targets",
]


@dataclasses.dataclass
class MixedBatch:
    """Output of every mixing augment.

    Attributes:
        images: ``(B, C, H, W)`` mixed images.
        targets: ``(B, K)`` soft targets ``weight_a * one_hot(labels_a) + weight_b * one_hot(labels_b)``.
        labels_a: ``(B,)`` labels of the images (the base of each mix).
        labels_b: ``(B,)`` labels of the partners.
        weight_a: ``(B,)`` float weight of ``labels_a``.
        weight_b: ``(B,)`` float weight of ``labels_b``.
    """

    images: Tensor
    targets: Tensor
    labels_a: Tensor
    labels_b: Tensor
    weight_a: Tensor
    weight_b: Tensor


@dataclasses.dataclass
class MixParams:
    """What :meth:`MixAugment.draw` decided; :meth:`MixAugment.apply` replays it.

    Attributes:
        partner: ``(B,)`` int64, index of each image's partner in the batch.
        mask: weight of the partner pixel in ``[0, 1]`` (1: the partner's pixel), broadcastable to the images.
        weight_a: ``(B,)`` float64 weight of the image's own label.
        weight_b: ``(B,)`` float64 weight of the partner's label.
        grid: ``(B, H, W, 2)`` sampling grid (``align_corners=True``) that warps each partner before blending
            (SnapMix's resized box), or ``None``.
        source: ``(B, C, H, W)`` blend source replacing the partners (KeepAugment: the augmented or cut images),
            or ``None``.
        saliency: ``(B, 1, H, W)`` the normalised maps that decided the mix (``None`` for random mixes).
    """

    partner: Tensor
    mask: Tensor
    weight_a: Tensor
    weight_b: Tensor
    grid: Tensor | None = None
    source: Tensor | None = None
    saliency: Tensor | None = None


# -- random draws -----------------------------------------------------------------------------------------------
def _device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Where to draw: on the generator's device (a generator only draws there), else on ``device``."""
    return generator.device if generator is not None else device


def random_ints(high: Tensor | int, shape: tuple[int, ...], generator: torch.Generator | None,
                device: torch.device) -> Tensor:
    """Uniform integers in ``[0, high)`` (``high`` a tensor broadcastable to ``shape`` or an int), int64."""
    u = torch.rand(shape, generator=generator, device=_device(generator, device), dtype=torch.float64).to(device)
    return (u * high).floor().long()


def random_permutation(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A random permutation of ``range(n)`` on ``device``."""
    return torch.randperm(n, generator=generator, device=_device(generator, device)).to(device)


def sample_beta(alpha: float, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` draws of ``Beta(alpha, alpha)`` as float64 on ``device``, replayable with ``generator``.

    torch's Beta sampler takes no generator, so one 63-bit seed is drawn from ``generator`` (or the global RNG)
    and numpy draws the ``n`` values: the same generator state gives the same draws on every device.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=_device(generator, device)).item())
    values = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.as_tensor(values, dtype=torch.float64, device=device)


# -- boxes ------------------------------------------------------------------------------------------------------
def cut_boxes(lam: Tensor, cy: Tensor, cx: Tensor, height: int, width: int) -> Tensor:
    """CutMix boxes of area about ``1 - lam`` centred at ``(cy, cx)``, clipped to the image.

    Args:
        lam: ``(B,)`` float64 in ``[0, 1]``.
        cy, cx: ``(B,)`` int64 centres (row, column).
        height, width: image size.

    Returns:
        ``(B, 4)`` int64 boxes ``(y1, x1, y2, x2)`` (``y2``/``x2`` exclusive).

    Example:
        >>> import torch
        >>> cut_boxes(torch.tensor([0.75], dtype=torch.float64), torch.tensor([1]), torch.tensor([4]), 8, 8).tolist()
        [[0, 2, 3, 6]]
    """
    ratio = torch.sqrt(1.0 - lam.double())
    cut_h = (height * ratio).floor().long()
    cut_w = (width * ratio).floor().long()
    y1 = (cy - cut_h // 2).clamp(0, height)
    y2 = (cy + cut_h // 2).clamp(0, height)
    x1 = (cx - cut_w // 2).clamp(0, width)
    x2 = (cx + cut_w // 2).clamp(0, width)
    return torch.stack((y1, x1, y2, x2), dim=1)


def box_area(boxes: Tensor) -> Tensor:
    """``(B,)`` int64 pixel areas of ``(B, 4)`` boxes ``(y1, x1, y2, x2)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """``(B, 1, H, W)`` bool masks, True inside each box ``(y1, x1, y2, x2)``."""
    rows = torch.arange(height, device=boxes.device).view(1, height, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, width)
    inside_y = (rows >= boxes[:, 0, None, None]) & (rows < boxes[:, 2, None, None])
    inside_x = (cols >= boxes[:, 1, None, None]) & (cols < boxes[:, 3, None, None])
    return (inside_y & inside_x).unsqueeze(1)


def mix_targets(labels_a: Tensor, labels_b: Tensor, weight_a: Tensor, weight_b: Tensor, num_classes: int) -> Tensor:
    """``(B, K)`` soft targets ``weight_a * one_hot(labels_a) + weight_b * one_hot(labels_b)`` (float32)."""
    targets = torch.zeros(labels_a.shape[0], num_classes, dtype=torch.float64, device=labels_a.device)
    targets.scatter_add_(1, labels_a.unsqueeze(1), weight_a.double().unsqueeze(1))
    targets.scatter_add_(1, labels_b.unsqueeze(1), weight_b.double().unsqueeze(1))
    return targets.float()


# -- saliency ---------------------------------------------------------------------------------------------------
class SaliencySource:
    """The saliency of a mixing augment: any explainer name, :class:`Explainer` or callable, or ``"random"``.

    ``"random"`` is the built-in control: a uniform random map per image drawn from the augment's generator, so
    the saliency-guided choice becomes a uniformly random one (the method's random-box counterpart) and the draw
    stays replayable and model-free. Model-free names (``"spectral_residual"``) need no model either.

    Args:
        explainer: a registered name, an :class:`~exaug.explainers.Explainer` or ``f(images, targets)``.
        options: options for a named explainer (e.g. ``{"target_layer": "layer4"}``).
    """

    MODEL_FREE = ("spectral_residual",)

    def __init__(self, explainer: str | Explainer | SaliencyFn, options: Mapping[str, Any] | None = None) -> None:
        self.is_random = explainer == "random"
        self.source = None if self.is_random else ExplainerSource(explainer, options)
        self.name = "random" if self.is_random else self.source.name  # type: ignore[union-attr]

    def maps(self, images: Tensor, labels: Tensor, model: nn.Module | None,
             generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Normalised maps ``(B, 1, H, W)`` of ``images`` for ``labels`` and their flat flags ``(B,)``."""
        if self.is_random:
            b, _, h, w = images.shape
            sal = torch.rand((b, 1, h, w), generator=generator, device=_device(generator, images.device))
            return sal.to(images.device), torch.zeros(b, dtype=torch.bool, device=images.device)
        assert self.source is not None
        if self.source.explainer in self.MODEL_FREE and not self.source.options:
            # No model involved: the FFT saliency directly, resized and normalised like a backend's map.
            raw = upsample_bilinear(spectral_residual(images), images.shape[-2:])
            return normalize_saliency(raw)
        if model is None:
            raise ValueError(f"model is required by explainer {self.name!r} (only {self.MODEL_FREE} and 'random' "
                             "work without one)")
        explanation = explain_normalized(self.source.for_model(model), images.detach(), labels, model)
        return explanation.saliency, explanation.flat


# -- the interface ----------------------------------------------------------------------------------------------
class MixAugment(nn.Module, abc.ABC):
    """Base of the mixing augments: ``draw`` (subclasses) decides, :meth:`apply` blends, :meth:`forward` does both.

    Args:
        num_classes: ``K``, the width of the soft targets.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes

    @abc.abstractmethod
    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Decide partners, regions and weights for a batch (see each method)."""

    def forward(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
                params: MixParams | None = None, generator: torch.Generator | None = None) -> MixedBatch:
        """:meth:`draw` (unless ``params`` are given), then :meth:`apply`.

        Shape:
            - images: ``(B, C, H, W)``; labels: ``(B,)``; see :class:`MixedBatch` for the output.
        """
        if params is None:
            params = self.draw(images, labels, model, generator=generator)
        return self.apply(images, labels, params)

    def check_inputs(self, images: Tensor, labels: Tensor) -> Tensor:
        """Validate a batch; returns the labels as int64 (range-checked against ``num_classes``)."""
        check_images(images)
        labels = check_labels(labels, images.shape[0], "labels")
        if labels.numel() and not bool(((labels >= 0) & (labels < self.num_classes)).all()):
            raise ValueError(f"labels must be class indices in [0, {self.num_classes - 1}]")
        return labels

    def apply(self, images: Tensor, labels: Tensor, params: MixParams) -> MixedBatch:
        """Blend each image with its (warped) partner or ``params.source`` by ``params.mask``: no model, no RNG.

        Shape:
            - images: ``(B, C, H, W)``; labels: ``(B,)``.
        """
        labels = self.check_inputs(images, labels)
        if not isinstance(params, MixParams):
            raise TypeError(f"params must be MixParams (from draw), got {type(params).__name__}")
        b = images.shape[0]
        if params.partner.shape != (b,) or params.weight_a.shape != (b,) or params.weight_b.shape != (b,):
            raise ValueError(f"params do not match a batch of {b} images")
        images = images.detach()
        if params.source is not None:
            source = params.source
        else:
            source = images.index_select(0, params.partner)
            if params.grid is not None:
                source = F.grid_sample(source, params.grid.to(source.dtype), mode="bilinear",
                                       padding_mode="border", align_corners=True)
        mixed = torch.lerp(images, source, params.mask.to(images.dtype).expand_as(images))
        labels_b = labels.index_select(0, params.partner)
        return MixedBatch(
            images=mixed,
            targets=mix_targets(labels, labels_b, params.weight_a, params.weight_b, self.num_classes),
            labels_a=labels,
            labels_b=labels_b,
            weight_a=params.weight_a.float(),
            weight_b=params.weight_b.float(),
        )
