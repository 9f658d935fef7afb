"""Drop / increase in confidence when only the most salient pixels are kept (the ExCon paper's protocol).

For each image, ``p_orig`` is the softmax probability of the class the model predicts on the original image,
the saliency is the explanation of that class, and ``p_pert`` is the probability of the same class on the image
that keeps only the ``q`` most salient pixels (the rest is filled as during training, by default with 0 in
normalised space, i.e. the dataset-mean colour)::

    Drop Percent     = mean 1[p_pert < p_orig]
    Drop Mag         = mean max(0, p_orig - p_pert) / p_orig
    Increase Percent = mean 1[p_pert > p_orig]
    Increase Mag     = mean max(0, p_pert - p_orig) / p_orig

Lower drop / higher increase is better: the kept pixels carry the evidence for the prediction.
``p_orig >= 1 / K`` because it is the probability of the argmax class, so the ratios are always finite.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from ..augment.masking import Fill, apply_mask, fill_like, keep_mask
from ..explainers import Explainer
from ..utils.checks import positive_int
from ..utils.checks import check_images
from .base import Metric, check_fractions, check_model, check_saliency, explainer_from, predict

__all__ = ["DROP_INCREASE_KEYS", "DropIncrease", "drop_increase"]

DROP_INCREASE_KEYS: tuple[str, ...] = ("drop_percent", "drop_mag", "increase_percent", "increase_mag")


def drop_increase(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    *,
    keep_fractions: Sequence[float] = (0.15, 0.30, 0.45),
    fill: Fill | float = "zero",
    logits: Tensor | None = None,
    flat: Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> dict[float, dict[str, Tensor]]:
    """Drop / increase scores of one batch, for every keep fraction, with one forward pass per fraction.

    Args:
        model: maps normalised images ``(B, C, H, W)`` to logits ``(B, K)``; run in eval mode without autograd.
        images: ``(B, C, H, W)`` normalised batch.
        saliency: ``(B, 1, H, W)`` explanation of the *predicted* class of each image.
        keep_fractions: fractions ``q`` of pixels kept (``round(q * H * W)`` most salient, exactly).
        fill: what replaces dropped pixels, see :func:`exaug.augment.masking.fill_like` (computed once per batch
            and shared by every ``q``).
        logits: ``(B, K)`` logits of ``images`` if already known (e.g. ``Explanation.logits``); saves a forward.
        flat: ``(B,)`` bool, maps without information (``Explanation.flat``): such images keep no pixel, as in
            training masking.
        reduction: ``"mean"``: 0-dim batch means; ``"none"``: per-sample ``(B,)`` values (indicators as float).

    Returns:
        ``{q: {"drop_percent", "drop_mag", "increase_percent", "increase_mag"}}``.
    """
    check_model(model)
    check_images(images)
    check_saliency(saliency, images)
    fractions = check_fractions(keep_fractions, "keep_fractions")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    images = images.detach()
    if logits is None:
        logits = predict(model, images)
    elif logits.shape[0] != images.shape[0]:
        raise ValueError(f"logits must have one row per image: {logits.shape[0]} vs {images.shape[0]}")
    probs = logits.detach().float().softmax(dim=1)
    p_orig, predicted = probs.max(dim=1)
    filler = fill_like(images, fill)
    out: dict[float, dict[str, Tensor]] = {}
    for q in fractions:
        keep = keep_mask(saliency, keep_fraction=q, flat=flat)
        perturbed = apply_mask(images, keep, filler)
        p_pert = predict(model, perturbed).float().softmax(dim=1).gather(1, predicted.unsqueeze(1)).squeeze(1)
        terms = {
            "drop_percent": (p_pert < p_orig).float(),
            "drop_mag": (p_orig - p_pert).clamp_min(0) / p_orig,
            "increase_percent": (p_pert > p_orig).float(),
            "increase_mag": (p_pert - p_orig).clamp_min(0) / p_orig,
        }
        out[q] = terms if reduction == "none" else {key: value.mean() for key, value in terms.items()}
    return out


class DropIncrease(Metric):
    """Streaming drop / increase over a dataset, with one explainer pass per batch for all keep fractions.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 3))
        >>> metric = DropIncrease("gradcam", model, keep_fractions=(0.3, 0.45), target_layer="0")
        >>> metric.update(torch.randn(4, 3, 8, 8))
        >>> sorted(metric.compute()[0.45])
        ['drop_mag', 'drop_percent', 'increase_mag', 'increase_percent']

    ``higher_is_better``: drop lower, increase higher (per reported value).

    Args:
        explainer_or_name: an :class:`~exaug.explainers.Explainer` or a registered name.
        model: the classifier (normalised images -> logits) whose confidence is measured.
        keep_fractions: fractions of pixels kept.
        fill: dropped-pixel fill (``"zero"``, ``"mean"``, ``"blur"``, ``"noise"`` or a number).
        target_layer: layer for an explainer built by name.
        explainer_options: options for an explainer built by name.
        chunk_size: images explained and scored together; larger batches are split. It bounds memory (on a GPU
            too). On a 2-core CPU at batch 256, chunks of 128 ran between 8 % slower and 2x faster than the whole
            batch, depending on the run: smaller activations stay in cache and avoid fresh pages
            (``benchmarks/speed.py``, docs/benchmarks.md). ``None`` keeps every batch whole.
    """

    higher_is_better = {"drop_percent": False, "drop_mag": False, "increase_percent": True, "increase_mag": True}

    def __init__(
        self,
        explainer_or_name: Explainer | str,
        model: nn.Module,
        keep_fractions: Sequence[float] = (0.15, 0.30, 0.45),
        fill: Fill | float = "zero",
        *,
        target_layer: Any = None,
        explainer_options: dict[str, Any] | None = None,
        chunk_size: int | None = 128,
    ) -> None:
        self.model = check_model(model)
        self.chunk_size = positive_int("chunk_size", chunk_size, allow_none=True)
        self.explainer = explainer_from(explainer_or_name, model, target_layer, explainer_options)
        self.keep_fractions = check_fractions(keep_fractions, "keep_fractions")
        self.fill = fill
        super().__init__()
        self.add_state("sums", None, "sum")  # (len(keep_fractions), 4): DROP_INCREASE_KEYS summed over images
        self.add_state("count", 0, "sum")
        #: number of images whose explanation was flat (they keep no pixel)
        self.add_state("n_flat", 0, "sum")

    def update(self, images: Tensor) -> None:
        """Explain the predicted class of ``images`` ``(B, C, H, W)`` once and score every keep fraction."""
        check_images(images)
        chunks = [images] if self.chunk_size is None else images.split(self.chunk_size)
        for chunk in chunks:
            self._update_chunk(chunk)

    def _update_chunk(self, images: Tensor) -> None:
        if self.explainer.model is self.model:
            explanation = self.explainer.explain(images)  # targets=None: the predicted class
            logits = explanation.logits if explanation.logits is not None else predict(self.model, images)
        else:
            # The explainer runs on another module (e.g. a wrapper): explain the scored model's prediction.
            logits = predict(self.model, images)
            explanation = self.explainer.explain(images, logits.argmax(dim=1))
        scores = drop_increase(
            self.model,
            images,
            explanation.saliency,
            keep_fractions=self.keep_fractions,
            fill=self.fill,
            logits=logits,
            flat=explanation.flat,
            reduction="none",
        )
        sums = torch.stack([torch.stack([scores[q][key].sum() for key in DROP_INCREASE_KEYS]) for q in scores])
        self.accumulate(sums=sums, count=images.shape[0], n_flat=explanation.flat.sum())

    def compute(self) -> dict[float, dict[str, float]]:
        """``{q: {"drop_percent": ..., "drop_mag": ..., "increase_percent": ..., "increase_mag": ...}}``."""
        self._require_data(self.count)
        assert self.sums is not None
        means = (self.sums.double() / self.count).tolist()
        return {q: dict(zip(DROP_INCREASE_KEYS, row)) for q, row in zip(self.keep_fractions, means)}
