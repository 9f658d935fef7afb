"""``ExplanationMaskAugment``: saliency-masked views routed as positives or background negatives (ExCon/ExConB).

Per batch (NOTES §2, the ExCon paper's Algorithm 1):

1. explain the un-augmented originals for their true label (or predicted class) with the encoder + classifier;
2. keep the pixels whose per-sample normalised saliency exceeds ``threshold`` (or the top ``keep_fraction``),
   fill the rest (0 in normalised space by default, i.e. the dataset-mean colour);
3. one no-grad forward of the masked images decides the routing: a correctly classified masked image replaces
   the first (backup) random view; a wrong one is discarded (ExCon) or, in ExConB, additionally appended as a
   *background* row that only ever appears in the contrastive denominators.

Everything is batched (``torch.where`` and ``index_select``); the only host synchronisation is the count of
background rows in ExConB, which fixes the output size. With a :class:`~exaug.augment.SaliencyCache`, step 1
explains only the rows whose cached map is stale and reuses the stored maps of the others, at the cost of two
more host syncs (the index range check and the number of stale rows; a third, the label range check, when the
explainer did not see the whole batch).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..explainers.base import Explainer, normalize_saliency, resolve_targets
from ..explainers.registry import create_explainer
from ..utils.checks import check_images, check_indices, check_labels
from ..utils.isolation import isolated
from .masking import FILLS, Fill, apply_mask, keep_mask
from .saliency_cache import SaliencyCache

__all__ = ["AugmentedBatch", "ExplanationMaskAugment"]

SaliencyFn = Callable[[Tensor, Tensor | None], Tensor]


@dataclasses.dataclass
class AugmentedBatch:
    """Output of :class:`ExplanationMaskAugment`: a contrastive batch of ``N' = B + k`` rows in two views.

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


class ExplanationMaskAugment:
    """Explanation-driven masked views for supervised contrastive learning (ExCon / ExConB).

    Example:
        >>> aug = ExplanationMaskAugment("gradcam", mode="exconb", explainer_options={"target_layer": "encoder.layer2"})
        >>> batch = aug(originals, (view1, view2), labels, classifier)   # classifier: images -> logits
        >>> z = projector(batch.images)                                  # (2N', D), L2-normalised
        >>> loss = ExConBLoss(0.1)(batch.as_views(z), batch.labels, batch.background)

    Args:
        explainer: a registered name (created lazily for the model passed at call time), an :class:`Explainer`,
            or any callable ``f(images, targets) -> (B, 1, H, W)``.
        mode: ``"excon"`` (wrong masks are dropped) or ``"exconb"`` (wrong masks become background negatives).
        threshold: keep pixels whose normalised saliency is above this (relative) value.
        keep_fraction: if given, keep this fraction of the most salient pixels instead (replaces ``threshold``).
        fill: value of dropped pixels: ``"zero"``, ``"mean"``, ``"blur"``, ``"noise"`` or a number.
        target: explain the true ``"label"`` (paper) or the ``"predicted"`` class.
        explainer_options: keyword options for :func:`exaug.create_explainer` (e.g. ``target_layer``).
        enabled: when False the augment returns the two random views unchanged (for start epochs).
        cache: reuse each image's map for ``cache.refresh_every`` epochs (:class:`~exaug.augment.SaliencyCache`,
            over the dataset the ``indices`` passed at call time point into); the owner calls
            ``cache.set_epoch(epoch)`` every epoch. ``None`` (the paper): explain every batch. With
            ``target="predicted"`` a cached map explains the class predicted when it was computed.
    """

    def __init__(
        self,
        explainer: str | Explainer | SaliencyFn = "gradcam",
        mode: Literal["excon", "exconb"] = "exconb",
        threshold: float = 0.5,
        keep_fraction: float | None = None,
        fill: Fill | float = "zero",
        target: Literal["label", "predicted"] = "label",
        explainer_options: Mapping[str, Any] | None = None,
        enabled: bool = True,
        cache: SaliencyCache | None = None,
    ) -> None:
        if mode not in ("excon", "exconb"):
            raise ValueError(f"mode must be 'excon' or 'exconb', got {mode!r}")
        if target not in ("label", "predicted"):
            raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
        if not isinstance(fill, (int, float)) and fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS} or a number, got {fill!r}")
        if not (isinstance(explainer, (str, Explainer)) or callable(explainer)):
            raise TypeError("explainer must be a registered name, an Explainer, or a callable f(images, targets)")
        if explainer_options and not isinstance(explainer, str):
            raise ValueError("explainer_options only apply when explainer is given by name")
        if cache is not None and not isinstance(cache, SaliencyCache):
            raise TypeError(f"cache must be a SaliencyCache or None, got {type(cache).__name__}")
        # Validate the masking rule now rather than at the first batch.
        keep_mask(torch.zeros(1, 1, 1, 1), threshold=threshold, keep_fraction=keep_fraction)
        self.explainer = explainer
        self.mode = mode
        self.threshold = threshold
        self.keep_fraction = keep_fraction
        self.fill = fill
        self.target = target
        self.explainer_options = dict(explainer_options or {})
        self.enabled = enabled
        self.cache = cache
        self._cached: tuple[weakref.ref[nn.Module], Explainer] | None = None

    # -- explainer resolution ---------------------------------------------------------------------------------
    def explainer_for(self, model: nn.Module) -> Explainer | SaliencyFn:
        """The explainer used for ``model`` (built once per model when given by name)."""
        if not isinstance(self.explainer, str):
            return self.explainer
        if self._cached is not None and self._cached[0]() is model:
            return self._cached[1]
        built = create_explainer(self.explainer, model, **self.explainer_options)
        self._cached = (weakref.ref(model), built)
        return built

    # -- the transform ----------------------------------------------------------------------------------------
    def __call__(
        self,
        originals: Tensor,
        views: Sequence[Tensor],
        labels: Tensor,
        model: nn.Module,
        indices: Tensor | None = None,
    ) -> AugmentedBatch:
        """Build the contrastive batch.

        Args:
            originals: ``(B, C, H, W)`` standard (un-augmented, normalised) images.
            views: ``(view1, view2)``, each ``(B, C, H, W)``; ``view1`` is the backup replaced by a correct mask.
            labels: ``(B,)`` int64 class labels.
            model: images -> logits ``(B, K)`` (encoder + classifier); used in eval mode and left untouched.
            indices: ``(B,)`` int64 dataset indices of the originals, in ``[0, len(cache))``; required when a
                ``cache`` is set, ignored otherwise.

        Returns:
            :class:`AugmentedBatch`.
        """
        view1, view2 = self._check_inputs(originals, views, labels, model, indices, self.cache)
        labels = labels.long()
        if not self.enabled:
            images = torch.cat((view1, view2))
            return AugmentedBatch(images, labels, torch.zeros_like(labels, dtype=torch.bool))

        explainer = self.explainer_for(model)
        if self.cache is None:
            saliency, flat = self._saliency(explainer, originals, labels, model)
            explained_all = True
        else:
            saliency, flat, explained_all = self._cached_saliency(explainer, originals, labels, model, indices)
        keep = keep_mask(saliency, threshold=self.threshold, keep_fraction=self.keep_fraction, flat=flat)
        masked = apply_mask(originals, keep, self.fill)
        with isolated(model), torch.no_grad():
            logits = model(masked)
        # A registry explainer asked for the labels of the whole batch has range-checked them already (one host
        # sync is enough).
        labels_checked = explained_all and isinstance(explainer, Explainer) and self.target == "label"
        self._check_labels(logits, labels, check_range=not labels_checked)
        correct = logits.argmax(dim=1) == labels

        correct_rows = correct.view(-1, 1, 1, 1)
        background = torch.zeros_like(labels, dtype=torch.bool)
        if self.mode == "exconb":
            # One host sync: the number of wrong masks fixes the batch size. nonzero() returns increasing indices.
            wrong = (~correct).nonzero().squeeze(1)
            b, k = labels.shape[0], wrong.shape[0]
            n = b + k
            # Written once into the final buffer (no torch.cat of temporaries): this is the hot path.
            images = originals.new_empty((2 * n, *originals.shape[1:]))
            torch.where(correct_rows, masked, view1, out=images[:b])
            torch.index_select(masked, 0, wrong, out=images[b:n])
            images[n : n + b] = view2
            images[n + b :] = images[b:n]
            labels_out = torch.cat((labels, labels.index_select(0, wrong)))
            background = torch.cat((background, torch.ones_like(wrong, dtype=torch.bool)))
        else:
            images = torch.cat((torch.where(correct_rows, masked, view1), view2))
            labels_out = labels
        return AugmentedBatch(
            images=images,
            labels=labels_out,
            background=background,
            masked=masked,
            saliency=saliency,
            keep=keep,
            correct=correct,
            flat=flat,
        )

    def _cached_saliency(
        self, explainer: Explainer | SaliencyFn, originals: Tensor, labels: Tensor, model: nn.Module, indices: Tensor
    ) -> tuple[Tensor, Tensor, bool]:
        """Maps and flat flags as :meth:`_saliency`, explaining only the rows whose cached map is stale.

        Returns:
            ``(saliency, flat, explained_all)``: the rows just explained carry their fresh float32 maps (so a batch
            of stale rows gives exactly the uncached result), the others the cached ones.
        """
        cache = self.cache
        assert cache is not None
        device = originals.device
        stale = cache.stale(indices).to(device)  # range-checks the indices: one host sync
        # One host sync: the number of stale rows fixes the size of the explained batch.
        stale_rows = stale.nonzero().squeeze(1)
        b, k = originals.shape[0], stale_rows.shape[0]
        if k == b:
            saliency, flat = self._saliency(explainer, originals, labels, model)
            cache.put(indices, saliency, flat, check_range=False)
            return saliency, flat, True
        # The other rows in increasing order without another sync: a stable sort puts the b - k fresh rows first.
        fresh_rows = torch.argsort(stale.to(torch.uint8), stable=True)[: b - k]
        indices = indices.to(device)
        cached, cached_flat = cache.get(indices.index_select(0, fresh_rows), check_range=False)
        cached, cached_flat = cached.to(device), cached_flat.to(device)
        if k == 0:
            return cached, cached_flat, False
        stale_indices = indices.index_select(0, stale_rows)
        fresh, fresh_flat = self._saliency(
            explainer, originals.index_select(0, stale_rows), labels.index_select(0, stale_rows), model
        )
        cache.put(stale_indices, fresh, fresh_flat, check_range=False)
        saliency = fresh.new_empty((b, *fresh.shape[1:]))
        saliency.index_copy_(0, stale_rows, fresh).index_copy_(0, fresh_rows, cached)
        flat = fresh_flat.new_empty(b)
        flat.index_copy_(0, stale_rows, fresh_flat).index_copy_(0, fresh_rows, cached_flat)
        return saliency, flat, False

    def _saliency(
        self, explainer: Explainer | SaliencyFn, originals: Tensor, labels: Tensor, model: nn.Module
    ) -> tuple[Tensor, Tensor]:
        """Normalised maps ``(B, 1, H, W)`` and flat flags ``(B,)`` for the originals."""
        targets = labels if self.target == "label" else None
        if isinstance(explainer, Explainer):
            explanation = explainer.explain(originals, targets)
            return explanation.saliency, explanation.flat
        with isolated(model):
            if targets is None:
                with torch.no_grad():
                    targets = model(originals).argmax(dim=1)
            raw = explainer(originals.detach(), targets)
        if not isinstance(raw, Tensor) or raw.shape != (originals.shape[0], 1, *originals.shape[-2:]):
            shape = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
            raise ValueError(f"the explainer callable must return (B, 1, H, W) = "
                             f"{(originals.shape[0], 1, *originals.shape[-2:])}, got {shape}")
        # Idempotent for registry explainers; makes arbitrary callables safe (a constant map keeps nothing).
        return normalize_saliency(raw.detach().float())

    # -- validation -------------------------------------------------------------------------------------------
    @staticmethod
    def _check_inputs(
        originals: Tensor,
        views: Sequence[Tensor],
        labels: Tensor,
        model: nn.Module,
        indices: Tensor | None,
        cache: SaliencyCache | None,
    ) -> tuple[Tensor, Tensor]:
        check_images(originals, "originals")
        if not isinstance(views, (tuple, list)) or len(views) != 2:
            raise ValueError("views must be a pair (view1, view2) of (B, C, H, W) tensors")
        for i, view in enumerate(views, start=1):
            if not isinstance(view, Tensor) or view.shape != originals.shape:
                shape = tuple(view.shape) if isinstance(view, Tensor) else type(view).__name__
                raise ValueError(f"view{i} must have the shape of originals {tuple(originals.shape)}, got {shape}")
        check_labels(labels, originals.shape[0], "labels")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module mapping images to logits, got {type(model).__name__}")
        if cache is not None:
            if indices is None:
                raise ValueError("indices (the (B,) dataset indices of the originals) are required when a "
                                 "SaliencyCache is set")
            # The range is checked where the cache is read (SaliencyCache.stale), once per batch.
            check_indices(indices, cache.num_samples, "indices", batch_size=originals.shape[0], check_range=False)
            if tuple(originals.shape[-2:]) != cache.image_size:
                raise ValueError(f"the cache holds {cache.image_size[0]}x{cache.image_size[1]} maps, the originals "
                                 f"are {originals.shape[-2]}x{originals.shape[-1]}")
        return views[0], views[1]

    @staticmethod
    def _check_labels(logits: Tensor, labels: Tensor, check_range: bool) -> None:
        if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"model must return logits (B, K) = ({labels.shape[0]}, K), got {tuple(logits.shape)}")
        if check_range:
            resolve_targets(labels, labels.shape[0], logits.shape[1], labels.device)

    def __repr__(self) -> str:
        rule = f"keep_fraction={self.keep_fraction}" if self.keep_fraction is not None else f"threshold={self.threshold}"
        name = self.explainer if isinstance(self.explainer, str) else type(self.explainer).__name__
        cache = f", cache={self.cache!r}" if self.cache is not None else ""
        return (
            f"ExplanationMaskAugment(explainer={name!r}, mode={self.mode!r}, {rule}, fill={self.fill!r}, "
            f"target={self.target!r}, enabled={self.enabled}{cache})"
        )
