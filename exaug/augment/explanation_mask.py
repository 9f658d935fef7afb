"""``ExplanationMaskAugment``: saliency-masked views routed as positives or background negatives (ExCon/ExConB).

Per batch (NOTES §2, the ExCon paper's Algorithm 1):

1. explain the un-augmented originals for their true label (or predicted class) with the encoder + classifier;
2. keep the pixels whose per-sample normalised saliency exceeds ``threshold`` (or the top ``keep_fraction``),
   fill the rest (0 in normalised space by default, i.e. the dataset-mean colour);
3. one no-grad forward of the masked images decides the routing: a correctly classified masked image replaces
   the first (backup) random view; a wrong one is discarded (ExCon) or, in ExConB, additionally appended as a
   *background* row that only ever appears in the contrastive denominators.

Like a kornia augmentation, the augment separates drawing from applying: :meth:`ExplanationMaskAugment.draw`
runs steps 1-3 (explainer and model) and returns a :class:`MaskParams`; :meth:`ExplanationMaskAugment.apply`
only routes, so a routing can be replayed, or tested with hand-made parameters, without an explainer.

Everything is batched (``torch.where`` and ``index_select``); the only host synchronisation is the count of
background rows in ExConB, which fixes the output size. With a :class:`~exaug.augment.SaliencyCache`, step 1
explains only the rows whose cached map is stale and reuses the stored maps of the others, at the cost of two
more host syncs (the index range check and the number of stale rows; a third, the label range check, when the
explainer did not see the whole batch).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..explainers.base import Explainer
from ..utils.checks import check_images, check_indices, check_labels, check_model_output
from ..utils.isolation import isolated
from ..utils.outputs import logits_of
from .batch import AugmentedBatch, MaskParams
from .explaining import ExplainerSource, SaliencyFn, explain_normalized
from .masking import Fill, apply_mask, check_fill, keep_mask
from .reference import REFERENCE_EXPLAINER, reference_explainer_options
from .saliency_cache import SaliencyCache

__all__ = ["AugmentedBatch", "MaskParams", "ExplanationMaskAugment"]


class ExplanationMaskAugment(nn.Module):
    """Explanation-driven masked views for supervised contrastive learning (ExCon / ExConB).

    An ``nn.Module`` for ``.to(device)`` and ``state_dict()`` (a ``cache`` is a submodule); the model is passed at
    call time and never registered, so neither moves nor saves it.

    Randomness: only ``fill="noise"`` is random; it draws from the ``generator`` given to :meth:`draw` /
    :meth:`forward`, or from torch's global RNG. Explaining, masking and routing are otherwise deterministic
    (up to the explainer: RISE-like backends draw their own masks).

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from torch import nn
        >>> from exaug.losses import ExConBLoss
        >>> _ = torch.manual_seed(0)
        >>> classifier = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                            nn.Flatten(), nn.Linear(8, 5))        # images -> logits
        >>> projector = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
        >>> originals, view1, view2 = torch.randn(3, 4, 3, 8, 8)
        >>> labels = torch.tensor([0, 1, 2, 3])
        >>> aug = ExplanationMaskAugment("gradcam", mode="exconb", explainer_options={"target_layer": "1"})
        >>> batch = aug(originals, (view1, view2), labels, classifier)
        >>> batch.images.shape[0] == 2 * batch.num_rows == 2 * (4 + int(batch.background.sum()))
        True
        >>> z = F.normalize(projector(batch.images), dim=1)                  # (2N', D), L2-normalised
        >>> loss = ExConBLoss(0.1)(batch.as_views(z), batch.labels, batch.background)
        >>> params = aug.draw(originals, labels, classifier)                  # draw once ...
        >>> replayed = aug.apply(originals, (view1, view2), labels, params)  # ... route without the model
        >>> torch.equal(replayed.images, aug(originals, (view1, view2), labels, classifier, params=params).images)
        True

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
            ``target="predicted"`` a cached map explains the class predicted when it was computed. The cache
            becomes a submodule: ``aug.to(device)`` moves it, ``aug.state_dict()`` holds it under ``cache.``.
            A ``map_size="native"`` cache stores the explainer's native maps (``Explanation.raw``) and serves
            them upsampled and normalised on the batch's device, as the explainer would.
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
        super().__init__()
        if mode not in ("excon", "exconb"):
            raise ValueError(f"mode must be 'excon' or 'exconb', got {mode!r}")
        if target not in ("label", "predicted"):
            raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
        check_fill(fill)
        # A plain object, so that neither an explainer object nor the model it wraps becomes a submodule.
        self.source = ExplainerSource(explainer, explainer_options)
        if cache is not None and not isinstance(cache, SaliencyCache):
            raise TypeError(f"cache must be a SaliencyCache or None, got {type(cache).__name__}")
        # Validate the masking rule now rather than at the first batch.
        keep_mask(torch.zeros(1, 1, 1, 1), threshold=threshold, keep_fraction=keep_fraction)
        self.mode = mode
        self.threshold = threshold
        self.keep_fraction = keep_fraction
        self.fill = fill
        self.target = target
        self.enabled = enabled
        self.cache = cache

    @classmethod
    def reference(
        cls, model_name: str, image_size: int = 32, mode: Literal["excon", "exconb"] = "exconb", **kwargs: Any
    ) -> "ExplanationMaskAugment":
        """The reference code's masks: signed Grad-CAM (``relu=False``) at its layer, threshold 0.5, zero fill.

        Example:
            >>> aug = ExplanationMaskAugment.reference("resnet18", image_size=32)
            >>> aug.explainer, aug.explainer_options
            ('gradcam', {'target_layer': 'encoder.layer2.1.conv2', 'relu': False})

        Args:
            model_name: ``resnet18`` or ``resnet50`` (:func:`~exaug.augment.reference_explainer_options`).
            image_size: input side (32: CIFAR; 64: Tiny ImageNet).
            mode: ``"excon"`` or ``"exconb"``.
            **kwargs: further options (``cache``, ``enabled``, ...); pass none of the masking rule to stay faithful.
        """
        options = reference_explainer_options(model_name, image_size)
        return cls(REFERENCE_EXPLAINER, mode=mode, explainer_options=options, **kwargs)

    @property
    def explainer(self) -> str | Explainer | SaliencyFn:
        """The explainer as given."""
        return self.source.explainer

    @property
    def explainer_options(self) -> dict[str, Any]:
        """The options of a named explainer."""
        return self.source.options

    def explainer_for(self, model: nn.Module) -> Explainer | SaliencyFn:
        """The explainer used for ``model`` (built once per model when given by name)."""
        return self.source.for_model(model)

    # -- the transform ----------------------------------------------------------------------------------------
    def forward(
        self,
        originals: Tensor,
        views: Sequence[Tensor],
        labels: Tensor,
        model: nn.Module | None = None,
        indices: Tensor | None = None,
        *,
        params: MaskParams | None = None,
        generator: torch.Generator | None = None,
    ) -> AugmentedBatch:
        """Build the contrastive batch: :meth:`draw` (unless ``params`` are given), then :meth:`apply`.

        Args:
            originals: standard (un-augmented, normalised) images.
            views: ``(view1, view2)``; ``view1`` is the backup replaced by a correct mask.
            labels: int64 class labels.
            model: images -> logits (encoder + classifier); used in eval mode and left untouched. Not needed
                with ``params``.
            indices: dataset indices of the originals, in ``[0, len(cache))``; required when a ``cache`` is set
                and ``params`` are not given, ignored otherwise.
            params: replay these parameters (no explainer, no model call) instead of drawing new ones.
            generator: random source of ``fill="noise"`` (``None``: the global RNG).

        Returns:
            :class:`AugmentedBatch`. With ``enabled=False`` the two views unchanged (``params`` are ignored).

        Shape:
            - originals, view1, view2: ``(B, C, H, W)``.
            - labels, indices: ``(B,)``.
        """
        view1, view2, labels = self._check_batch(originals, views, labels)
        if params is None:
            self._check_model(originals, model, indices)
        if not self.enabled:
            return AugmentedBatch(torch.cat((view1, view2)), labels, torch.zeros_like(labels, dtype=torch.bool))
        if params is None:
            params = self._draw(originals, labels, model, indices, generator)  # type: ignore[arg-type]
        return self._route(originals, view1, view2, labels, params)

    def draw(
        self,
        originals: Tensor,
        labels: Tensor,
        model: nn.Module,
        indices: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> MaskParams:
        """Explain, mask and check the originals: everything that needs the explainer and the model.

        Args:
            originals: standard (un-augmented, normalised) images.
            labels: int64 class labels.
            model: images -> logits; used in eval mode and left untouched.
            indices: dataset indices of the originals; required when a ``cache`` is set.
            generator: random source of ``fill="noise"`` (``None``: the global RNG).

        Returns:
            :class:`MaskParams` (drawn even when ``enabled`` is False).

        Shape:
            - originals: ``(B, C, H, W)``; labels, indices: ``(B,)``.
        """
        check_images(originals, "originals")
        labels = check_labels(labels, originals.shape[0], "labels")
        self._check_model(originals, model, indices)
        return self._draw(originals, labels, model, indices, generator)

    def apply(self, originals: Tensor, views: Sequence[Tensor], labels: Tensor, params: MaskParams) -> AugmentedBatch:
        """Route by drawn (or hand-made) parameters: no explainer, no model call; ignores ``enabled``.

        Args:
            originals: the images the parameters were drawn for (their shape is checked).
            views: ``(view1, view2)``.
            labels: int64 class labels.
            params: :class:`MaskParams` (only ``masked`` and ``correct`` are used).

        Returns:
            :class:`AugmentedBatch`.

        Shape:
            - originals, view1, view2, params.masked: ``(B, C, H, W)``.
            - labels, params.correct: ``(B,)``.
        """
        view1, view2, labels = self._check_batch(originals, views, labels)
        return self._route(originals, view1, view2, labels, params)

    def _draw(
        self,
        originals: Tensor,
        labels: Tensor,
        model: nn.Module,
        indices: Tensor | None,
        generator: torch.Generator | None,
    ) -> MaskParams:
        explainer = self.source.for_model(model)
        targets = labels if self.target == "label" else None
        if self.cache is None:
            explanation = explain_normalized(explainer, originals, targets, model)
            saliency, flat, explained_all = explanation.saliency, explanation.flat, True
        else:
            assert indices is not None  # checked by _check_model

            def compute(rows: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
                images, rows_targets = originals, targets
                if rows is not None:
                    images = originals.index_select(0, rows)
                    rows_targets = None if targets is None else targets.index_select(0, rows)
                explained = explain_normalized(explainer, images, rows_targets, model)
                # The native map too: a compact cache stores it and serves it upsampled as explain() does.
                return explained.saliency, explained.flat, explained.raw

            saliency, flat, explained_all = self.cache.serve(indices, compute, originals.device)
        keep = keep_mask(saliency, threshold=self.threshold, keep_fraction=self.keep_fraction, flat=flat)
        masked = apply_mask(originals, keep, self.fill, generator=generator)
        with isolated(model), torch.no_grad():
            logits = logits_of(model(masked))
        # A registry explainer asked for the labels of the whole batch has range-checked them already (one host
        # sync is enough). The "embeddings, not logits" test runs once per model, folded into the same sync.
        labels_checked = explained_all and isinstance(explainer, Explainer) and self.target == "label"
        check_model_output(logits, labels.shape[0], None if labels_checked else labels, model=model)
        # A NaN/inf pixel that survives the mask gives non-finite logits, whose argmax is 0: such a row is never
        # counted correct (no host sync needed); it is routed like any wrong mask.
        correct = (logits.argmax(dim=1) == labels) & torch.isfinite(logits).all(dim=1)
        return MaskParams(saliency=saliency, flat=flat, keep=keep, masked=masked, correct=correct)

    def _route(
        self, originals: Tensor, view1: Tensor, view2: Tensor, labels: Tensor, params: MaskParams
    ) -> AugmentedBatch:
        self._check_params(originals, params)
        masked, correct = params.masked, params.correct
        correct_rows = correct.view(-1, 1, 1, 1)
        background = torch.zeros_like(labels, dtype=torch.bool)
        if self.mode == "exconb":
            # One host sync: the number of wrong masks fixes the batch size. nonzero() returns increasing indices.
            wrong = (~correct).nonzero().squeeze(1)
            b, k = labels.shape[0], wrong.shape[0]
            n = b + k
            if torch.is_grad_enabled() and any(t.requires_grad for t in (originals, masked, view1, view2)):
                # `out=` cannot write into a buffer that autograd must track (views from a differentiable
                # augmentation): the same rows, assembled by torch.cat.
                extra = masked.index_select(0, wrong)
                images = torch.cat((torch.where(correct_rows, masked, view1), extra, view2, extra))
            else:
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
            saliency=params.saliency,
            keep=params.keep,
            correct=correct,
            flat=params.flat,
        )

    # -- validation -------------------------------------------------------------------------------------------
    @staticmethod
    def _check_batch(originals: Tensor, views: Sequence[Tensor], labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        check_images(originals, "originals")
        if not isinstance(views, (tuple, list)) or len(views) != 2:
            raise ValueError("views must be a pair (view1, view2) of (B, C, H, W) tensors")
        for i, view in enumerate(views, start=1):
            if not isinstance(view, Tensor) or view.shape != originals.shape:
                shape = tuple(view.shape) if isinstance(view, Tensor) else type(view).__name__
                raise ValueError(f"view{i} must have the shape of originals {tuple(originals.shape)}, got {shape}")
        labels = check_labels(labels, originals.shape[0], "labels")
        return views[0], views[1], labels

    def _check_model(self, originals: Tensor, model: Any, indices: Tensor | None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module mapping images to logits, got {type(model).__name__} "
                            "(only replaying params=... needs no model)")
        cache = self.cache
        if cache is not None:
            if indices is None:
                raise ValueError("indices (the (B,) dataset indices of the originals) are required when a "
                                 "SaliencyCache is set")
            # The range is checked where the cache is read (SaliencyCache.stale), once per batch.
            check_indices(indices, cache.num_samples, "indices", batch_size=originals.shape[0], check_range=False)
            if tuple(originals.shape[-2:]) != cache.image_size:
                raise ValueError(f"the cache holds {cache.image_size[0]}x{cache.image_size[1]} maps, the originals "
                                 f"are {originals.shape[-2]}x{originals.shape[-1]}")

    @staticmethod
    def _check_params(originals: Tensor, params: MaskParams) -> None:
        if not isinstance(params, MaskParams):
            raise TypeError(f"params must be MaskParams (from ExplanationMaskAugment.draw), got "
                            f"{type(params).__name__}")
        b = originals.shape[0]
        if not isinstance(params.masked, Tensor) or params.masked.shape != originals.shape:
            shape = tuple(params.masked.shape) if isinstance(params.masked, Tensor) else type(params.masked).__name__
            raise ValueError(f"params.masked must have the shape of originals {tuple(originals.shape)}, got {shape}")
        correct = params.correct
        if not isinstance(correct, Tensor) or correct.dtype != torch.bool or correct.shape != (b,):
            desc = f"{correct.dtype} {tuple(correct.shape)}" if isinstance(correct, Tensor) else type(correct).__name__
            raise ValueError(f"params.correct must be a bool tensor of shape ({b},), got {desc}")

    def extra_repr(self) -> str:
        rule = f"threshold={self.threshold}" if self.keep_fraction is None else f"keep_fraction={self.keep_fraction}"
        return (f"explainer={self.source.name!r}, mode={self.mode!r}, {rule}, fill={self.fill!r}, "
                f"target={self.target!r}, enabled={self.enabled}")
