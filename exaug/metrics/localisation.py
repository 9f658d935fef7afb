"""Localisation against a ground truth (Arras et al. 2022, "CLEVR-XAI"): pointing game, relevance mass accuracy
and relevance rank accuracy of a saliency map inside the object mask (or box).

For a map ``s`` over the pixels ``p`` of one image and its object mask ``GT`` (``K = |GT|`` pixels):

* **pointing game**: is the most relevant pixel inside the object? ``hit = |argmax s ∩ GT| / |argmax s|``;
  with a unique maximum this is 0 or 1 (Quantus' ``PointingGame``); a tie over several maxima counts the share
  of them inside the object (the expected hit of a random tie-break), so a flat map scores the object's area
  fraction (chance) instead of a free hit;
* **relevance mass accuracy**: ``sum_{p in GT} s+(p) / sum_p s+(p)``, the share of the *positive* relevance
  inside the object: :func:`~exaug.metrics.content_heatmap` of ``max(s, 0)`` (one implementation; a map with no
  positive mass scores the area fraction, where Quantus divides 0 by 0);
* **relevance rank accuracy**: the fraction of the ``K`` most relevant pixels that lie inside the object,
  ``|top-K(s) ∩ GT| / K``; ties in ``s`` are ranked by pixel index (row-major, a stable sort).

All three are higher-is-better, in ``[0, 1]``, and NaN for an image whose mask is empty (e.g. a Tiny ImageNet
image without a known box, as Quantus does); the streaming class leaves those images out and counts them.
Signed maps are accepted (raw gradients); exaug's explainers give ``[0, 1]`` maps.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..explainers import Explainer
from .base import Metric, explainer_from
from .content_heatmap import content_heatmap, object_mask

__all__ = [
    "LOCALISATION_KEYS",
    "Localisation",
    "localisation_scores",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
]

#: The values :func:`localisation_scores` and :class:`Localisation` report, in this order.
LOCALISATION_KEYS: tuple[str, ...] = ("pointing_game", "relevance_mass", "relevance_rank")


def _prepare(saliency: Any, mask: Tensor | None, boxes: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(maps (B, N) float64, object (B, N) bool, object size (B,))`` after validating the inputs."""
    if not isinstance(saliency, Tensor) or saliency.dim() != 4 or saliency.shape[1] != 1:
        raise ValueError(f"saliency must have shape (B, 1, H, W), got {getattr(saliency, 'shape', None)}")
    if saliency.shape[0] == 0:
        raise ValueError("saliency is an empty batch (B = 0)")
    if not saliency.dtype.is_floating_point:
        raise TypeError(f"saliency must be a float tensor, got dtype {saliency.dtype}")
    obj = object_mask(saliency, mask, boxes).flatten(1)
    return saliency.detach().flatten(1).double(), obj, obj.sum(dim=1)


def _empty_to_nan(values: Tensor, size: Tensor) -> Tensor:
    return torch.where(size > 0, values, torch.full_like(values, float("nan")))


def pointing_game(saliency: Tensor, mask: Tensor | None = None, *, boxes: Tensor | None = None) -> Tensor:
    """Per-image pointing game: the share of the map's maxima that lie inside the object.

    Args:
        saliency: ``(B, 1, H, W)`` maps (signed or not).
        mask: ``(B, 1, H, W)`` (or ``(B, H, W)``) bool object masks.
        boxes: ``(B, 4)`` ``xyxy`` object boxes in pixels (instead of ``mask``).

    Returns:
        ``(B,)`` float64 in ``[0, 1]`` (NaN where the mask is empty).

    Example:
        >>> import torch
        >>> saliency = torch.zeros(2, 1, 4, 4)
        >>> saliency[0, 0, 0, 0] = 1.0  # the peak in the top-left corner; image 1 is flat
        >>> pointing_game(saliency, boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 2)).tolist()
        [1.0, 0.25]

    Shape:
        - saliency, mask: ``(B, 1, H, W)``; boxes: ``(B, 4)``; output: ``(B,)``.
    """
    maps, obj, size = _prepare(saliency, mask, boxes)
    peak = maps == maps.amax(dim=1, keepdim=True)  # (B, N): every maximum (ties included)
    hits = (peak & obj).sum(dim=1).double() / peak.sum(dim=1)
    return _empty_to_nan(hits, size)


def relevance_mass_accuracy(saliency: Tensor, mask: Tensor | None = None, *, boxes: Tensor | None = None) -> Tensor:
    """Per-image share of the positive relevance inside the object (Content Heatmap of ``max(s, 0)``).

    Args and returns: as :func:`pointing_game`; negative saliency values are ignored.

    Example:
        >>> import torch
        >>> saliency = torch.tensor([[[[3.0, 1.0], [-5.0, 0.0]]]])
        >>> relevance_mass_accuracy(saliency, torch.tensor([[[[True, False], [True, False]]]])).tolist()
        [0.75]

    Shape:
        - saliency, mask: ``(B, 1, H, W)``; boxes: ``(B, 4)``; output: ``(B,)``.
    """
    _, obj, size = _prepare(saliency, mask, boxes)
    mass = content_heatmap(saliency.detach().clamp_min(0), obj.view_as(saliency)).double()
    return _empty_to_nan(mass, size)


def relevance_rank_accuracy(saliency: Tensor, mask: Tensor | None = None, *, boxes: Tensor | None = None) -> Tensor:
    """Per-image fraction of the ``K = |object|`` most relevant pixels that lie inside the object.

    Args and returns: as :func:`pointing_game`.

    Example:
        >>> import torch
        >>> saliency = torch.tensor([[[[0.9, 0.8], [0.1, 0.7]]]])  # top-2 pixels: (0, 0) and (0, 1)
        >>> relevance_rank_accuracy(saliency, torch.tensor([[[[True, False], [False, True]]]])).tolist()
        [0.5]

    Shape:
        - saliency, mask: ``(B, 1, H, W)``; boxes: ``(B, 4)``; output: ``(B,)``.
    """
    maps, obj, size = _prepare(saliency, mask, boxes)
    # One batched sort instead of a top-k per image (K differs per image): rank r is in the top-K when r < K.
    order = maps.argsort(dim=1, descending=True, stable=True)
    inside_by_rank = obj.gather(1, order)  # (B, N)
    in_top = torch.arange(maps.shape[1], device=maps.device) < size[:, None]
    hits = (inside_by_rank & in_top).sum(dim=1).double() / size.clamp_min(1)
    return _empty_to_nan(hits, size)


def localisation_scores(
    saliency: Tensor, mask: Tensor | None = None, *, boxes: Tensor | None = None
) -> dict[str, Tensor]:
    """The three scores of every image, ``{key of LOCALISATION_KEYS: (B,) float64}`` (NaN: empty mask).

    Example:
        >>> import torch
        >>> saliency = torch.zeros(1, 1, 4, 4)
        >>> saliency[..., :2, :2] = 1.0  # all the relevance on the object
        >>> scores = localisation_scores(saliency, boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]]))
        >>> {k: v.tolist() for k, v in scores.items()}
        {'pointing_game': [1.0], 'relevance_mass': [1.0], 'relevance_rank': [1.0]}

    Shape:
        - saliency, mask: ``(B, 1, H, W)``; boxes: ``(B, 4)``; each value: ``(B,)``.
    """
    funcs = (pointing_game, relevance_mass_accuracy, relevance_rank_accuracy)
    return {key: f(saliency, mask, boxes=boxes) for key, f in zip(LOCALISATION_KEYS, funcs)}


class Localisation(Metric):
    """Streaming mean pointing game, relevance mass and relevance rank accuracy (images with an empty mask are
    left out and counted in ``images_without_mask``).

    Args:
        explainer: ``None``: :meth:`update` takes saliency maps; an :class:`~exaug.explainers.Explainer` or a
            registered name: :meth:`update` takes images and explains them first.
        model: the model a named ``explainer`` is built on.
        target_layer: layer of a named explainer (``None``: its default).
        explainer_options: options of a named explainer.

    Example:
        >>> import torch
        >>> saliency = torch.zeros(2, 1, 4, 4)
        >>> saliency[0, 0, 0, 0] = 1.0  # on the object
        >>> saliency[1, 0, 3, 3] = 1.0  # off the object
        >>> metric = Localisation()
        >>> metric.update(saliency, boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 2))
        >>> metric.compute()["pointing_game"]
        0.5
    """

    higher_is_better: Mapping[str, bool | None] = {key: True for key in LOCALISATION_KEYS}

    def __init__(
        self,
        explainer: Explainer | str | None = None,
        model: nn.Module | None = None,
        *,
        target_layer: Any = None,
        explainer_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if explainer is None:
            self.explainer: Explainer | None = None
        else:
            if isinstance(explainer, str) and not isinstance(model, nn.Module):
                raise TypeError(f"model must be a torch.nn.Module to build explainer {explainer!r}, got "
                                f"{type(model).__name__}")
            self.explainer = explainer_from(explainer, model, target_layer, explainer_options)  # type: ignore[arg-type]
        self.add_state("totals", 0.0, "sum")  # (3,) float64 sums over the images with a mask
        self.add_state("count", 0, "sum")
        self.add_state("empty", 0, "sum")

    def update(
        self, inputs: Tensor, mask: Tensor | None = None, *, boxes: Tensor | None = None, targets: Any = None
    ) -> None:
        """Fold a batch in: maps ``(B, 1, H, W)`` (or images ``(B, C, H, W)`` when the metric has an explainer,
        explained for ``targets``, default the predicted class) with their object ``mask`` or ``boxes``."""
        if self.explainer is not None:
            inputs = self.explainer.explain(inputs, targets).saliency
        elif targets is not None:
            raise ValueError("targets are only used with an explainer; this Localisation metric takes maps")
        scores = torch.stack(list(localisation_scores(inputs, mask, boxes=boxes).values()))  # (3, B)
        known = ~scores[0].isnan()
        self.accumulate(totals=torch.where(known, scores, torch.zeros_like(scores)).sum(dim=1),
                        count=known.sum(), empty=(~known).sum())

    def compute(self) -> dict[str, Any]:
        """``{"pointing_game", "relevance_mass", "relevance_rank": mean, "images": scored,
        "images_without_mask": left out}``."""
        self._require_data(self.count)
        means = (self.totals / self.count).tolist()
        return {**dict(zip(LOCALISATION_KEYS, means)), "images": int(self.count),
                "images_without_mask": int(self.empty)}
