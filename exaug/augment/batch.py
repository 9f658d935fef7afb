"""What :class:`~exaug.augment.ExplanationMaskAugment` draws (:class:`MaskParams`) and returns
(:class:`AugmentedBatch`): plain containers, so routing can be replayed or tested with hand-made parameters."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

__all__ = ["AugmentedBatch", "MaskParams"]


@dataclasses.dataclass
class AugmentedBatch:
    """Output of :class:`ExplanationMaskAugment`: a contrastive batch of ``N' = B + k`` rows in two views.

    Shape:
        See the attributes (``B`` input rows, ``k`` background rows, ``N' = B + k``).

    Attributes:
        images: ``(2 * N', C, H, W)``, view-major (``torch.cat([view1, view2])`` as in SupContrast); the ``k``
            background rows come after the ``B`` regular rows in both views, identical in both.
        labels: ``(N',)`` int64.
        background: ``(N',)`` bool, True for background-negative rows (ExConB only).
        masked: ``(B, C, H, W)`` masked originals, or ``None`` when masking was disabled.
        saliency: ``(B, 1, H, W)`` normalised maps (stored ones for rows served by a cache), or ``None``.
        keep: ``(B, 1, H, W)`` bool keep-masks, or ``None``.
        correct: ``(B,)`` bool, whether the masked image was classified as its label, or ``None``.
        flat: ``(B,)`` bool, maps that carried no information (they keep nothing), or ``None``.
    """

    images: Tensor
    labels: Tensor
    background: Tensor
    masked: Tensor | None = None
    saliency: Tensor | None = None
    keep: Tensor | None = None
    correct: Tensor | None = None
    flat: Tensor | None = None

    @property
    def num_rows(self) -> int:
        """``N'``: regular plus background rows."""
        return self.labels.shape[0]

    def as_views(self, embeddings: Tensor) -> Tensor:
        """Reshape model outputs for :images: ``(2 * N', D)`` into ``(N', 2, D)`` for the contrastive losses."""
        n = self.num_rows
        if embeddings.dim() != 2 or embeddings.shape[0] != 2 * n:
            raise ValueError(f"embeddings must have shape (2 * {n}, D) = ({2 * n}, D), got {tuple(embeddings.shape)}")
        return torch.stack((embeddings[:n], embeddings[n:]), dim=1)

    @property
    def stats(self) -> dict[str, float]:
        """Routing statistics as Python floats (computed on access: each access synchronises with the device).

        Keys: ``masked_correct`` (fraction of masked images classified correctly), ``kept_area`` (mean fraction
        of pixels kept), ``flat`` (fraction of uninformative maps), ``background`` (number of background rows),
        ``rows`` (``N'``).
        """
        out = {"rows": float(self.num_rows), "background": float(self.background.sum())}
        if self.correct is not None:
            out["masked_correct"] = float(self.correct.float().mean())
        if self.keep is not None:
            out["kept_area"] = float(self.keep.float().mean())
        if self.flat is not None:
            out["flat"] = float(self.flat.float().mean())
        return out


@dataclasses.dataclass
class MaskParams:
    """What :meth:`ExplanationMaskAugment.draw` decided for a batch; :meth:`ExplanationMaskAugment.apply` routes.

    Hand-made parameters are fine (routing needs only ``masked`` and ``correct``): that is how routing is
    tested without an explainer.

    Attributes:
        saliency: normalised maps (stored ones for rows served by a cache).
        flat: bool, maps that carried no information (they keep nothing).
        keep: bool keep-masks.
        masked: the masked originals.
        correct: bool, whether the masked image was classified as its label.

    Shape:
        - saliency, keep: ``(B, 1, H, W)``.
        - masked: ``(B, C, H, W)``.
        - flat, correct: ``(B,)``.
    """

    saliency: Tensor
    flat: Tensor
    keep: Tensor
    masked: Tensor
    correct: Tensor
