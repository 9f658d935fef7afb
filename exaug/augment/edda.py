"""``EDDAAugment``: explanation-driven data augmentation for cross-entropy training (EDDA, seed 002).

The principle: if model and explainer are aligned, occluding the *salient* region of an image should lower the
model's confidence, while occluding the same area of its *non-salient* region should not change the prediction.
EDDA turns this into training data. For every image and its explanation:

* a **salient-occluded** copy: the ``salient_fraction`` most salient pixels are replaced by the fill and the copy
  gets a lower-confidence soft target (see ``target``), or is left out (``target="exclude"``);
* a **non-salient-occluded** copy: the same number of *least* salient pixels are replaced, target = the one-hot
  label.

``policy="random"`` is the control: the same two occlusions at random positions (smooth random maps), same
targets, so the only difference to ``"explanation"`` is *where* the occlusion falls. No public code exists for
EDDA; the target policies follow NOTES §6.

Like :class:`~exaug.augment.ExplanationMaskAugment`, the augment separates drawing from applying:
:meth:`EDDAAugment.draw` explains the batch and decides the two occluded regions and the targets
(:class:`EDDAParams`); :meth:`EDDAAugment.apply` only fills the regions and selects the rows.

Random generators: the tie-break among equal saliency values and ``fill="noise"`` draw from the ``generator``
passed to :meth:`~EDDAAugment.draw` (``None``: torch's global RNG), in that order; the random maps of
``policy="random"`` come from a private generator seeded with ``seed`` (``None``: the global RNG, drawn before
the tie-break).

Everything is batched (``topk`` masks, ``torch.where`` fills); the only host synchronisation is the count of
rows that survive (flat maps, ``"exclude"``), which fixes the output size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explainers.base import Explainer, resolve_targets
from ..utils.checks import check_images, check_labels
from ..utils.isolation import isolated
from ..utils.outputs import logits_of
from .explaining import ExplainerSource, SaliencyFn, explain_normalized
from .masking import Fill, apply_mask, check_fill, fill_like, keep_mask

__all__ = ["EDDABatch", "EDDAParams", "EDDAAugment", "EDDA_TARGETS", "EDDA_POLICIES"]

EDDA_TARGETS: tuple[str, ...] = ("soft", "uniform", "lower_confidence", "exclude")
EDDA_POLICIES: tuple[str, ...] = ("explanation", "random")
# Below any saliency difference that matters (maps are in [0, 1]) yet well above float32 resolution at 1.
TIE_BREAK = 1e-5


@dataclasses.dataclass
class EDDABatch:
    """Output of :class:`EDDAAugment`: ``M`` occluded images with probability targets.

    Rows are ordered salient-occluded first, then non-salient-occluded, each in the order of the input batch;
    images whose map was flat contribute no row, and with ``target="exclude"`` there are no salient rows.

    Shape:
        See the attributes (``B`` input images, ``M <= 2B`` rows, ``K`` classes).

    Attributes:
        images: ``(M, C, H, W)`` occluded images.
        targets: ``(M, K)`` float, each row a probability distribution (use with
            ``F.cross_entropy(logits, targets)``).
        salient: ``(M,)`` bool, row is a salient-occluded image.
        nonsalient: ``(M,)`` bool, row is a non-salient-occluded image (``salient ^ nonsalient`` is all True).
        source: ``(M,)`` int64, index in the input batch of the image each row comes from.
        labels: ``(M,)`` int64, the original label of each row.
        saliency: ``(B, 1, H, W)`` normalised maps that decided the occlusions (random maps for the control).
        flat: ``(B,)`` bool, maps that carried no information (their images produced no row).
        logits: ``(B, K)`` detached logits of the input images (eval mode).
    """

    images: Tensor
    targets: Tensor
    salient: Tensor
    nonsalient: Tensor
    source: Tensor
    labels: Tensor
    saliency: Tensor
    flat: Tensor
    logits: Tensor

    @property
    def num_rows(self) -> int:
        """``M``."""
        return self.images.shape[0]


@dataclasses.dataclass
class EDDAParams:
    """What :meth:`EDDAAugment.draw` decided for a batch; :meth:`EDDAAugment.apply` builds the rows from it.

    Attributes:
        salient_keep: bool keep-masks of the salient-occluded copies (False on the occluded, most salient pixels).
        nonsalient_keep: bool keep-masks of the non-salient-occluded copies.
        salient_targets: probability targets of the salient-occluded copies.
        nonsalient_targets: probability targets of the non-salient-occluded copies (the one-hot labels).
        saliency: normalised maps that decided the occlusions (random maps for the control).
        flat: bool, maps that carried no information (their images produce no row).
        logits: detached eval-mode logits of the images.
        fill: the drawn fill values of ``fill="noise"`` (salient copies first, then non-salient), or ``None``:
            deterministic fills are computed by :meth:`~EDDAAugment.apply`.

    Shape:
        - salient_keep, nonsalient_keep, saliency: ``(B, 1, H, W)``.
        - salient_targets, nonsalient_targets, logits: ``(B, K)``.
        - flat: ``(B,)``.
        - fill: ``(2B, C, H, W)`` or ``None``.
    """

    salient_keep: Tensor
    nonsalient_keep: Tensor
    salient_targets: Tensor
    nonsalient_targets: Tensor
    saliency: Tensor
    flat: Tensor
    logits: Tensor
    fill: Tensor | None = None


class EDDAAugment(nn.Module):
    """Explanation-driven occlusions with lower-confidence targets (EDDA).

    An ``nn.Module`` (no parameters or buffers of its own); the model is passed at call time and never
    registered. Random generators: see the module docstring.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> classifier = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                            nn.Flatten(), nn.Linear(8, 5))        # images -> logits, left untouched
        >>> images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> aug = EDDAAugment("gradcam", salient_fraction=0.25, target="soft", explainer_options={"target_layer": "1"})
        >>> batch = aug(images, labels, classifier)
        >>> logits = classifier(torch.cat([images, batch.images]))
        >>> targets = torch.cat([F.one_hot(labels, 5).float(), batch.targets])
        >>> loss = F.cross_entropy(logits, targets)           # soft-target cross-entropy
        >>> params = aug.draw(images, labels, classifier, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(aug.apply(images, labels, params).images, aug(images, labels, params=params).images)
        True

    Args:
        explainer: a registered name (built lazily for the model passed at call time), an
            :class:`~exaug.explainers.Explainer`, or a callable ``f(images, targets) -> (B, 1, H, W)``. Resolved
            exactly as :class:`~exaug.augment.ExplanationMaskAugment` does. Ignored by ``policy="random"``.
        salient_fraction: fraction of pixels occluded in each copy (exactly ``round(f * H * W)`` pixels, top-k).
        target: target of salient-occluded copies: ``"soft"`` (``confidence * one_hot + (1 - confidence) *
            uniform``), ``"uniform"`` (``1/K`` everywhere), ``"lower_confidence"`` (the model's own
            probabilities on the original with the label's probability multiplied by ``confidence_scale``,
            renormalised), or ``"exclude"`` (no salient-occluded rows).
        policy: ``"explanation"`` (occlude by saliency) or ``"random"`` (the control: occlude the same number of
            pixels where a smooth random map is high / low).
        fill: value of occluded pixels: ``"zero"`` (dataset mean in normalised space), ``"mean"``, ``"blur"``,
            ``"noise"`` or a number.
        confidence: weight of the one-hot label in the ``"soft"`` target, in ``[0, 1]``.
        confidence_scale: factor on the label's probability in the ``"lower_confidence"`` target, in ``[0, 1]``.
        explain: explain the true ``"label"`` or the ``"predicted"`` class.
        explainer_options: keyword options for :func:`exaug.create_explainer` (e.g. ``target_layer``).
        random_grid: side of the coarse grid of the random maps (upsampled bilinearly, so random occlusions are
            blobs like saliency regions rather than scattered pixels); ``None``: one value per pixel.
        seed: seed of the random maps' private generator (``None``: the global RNG).

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; see :class:`EDDABatch` for the output.
    """

    def __init__(
        self,
        explainer: str | Explainer | SaliencyFn = "gradcam",
        salient_fraction: float = 0.2,
        target: Literal["soft", "uniform", "lower_confidence", "exclude"] = "soft",
        policy: Literal["explanation", "random"] = "explanation",
        fill: Fill | float = "zero",
        *,
        confidence: float = 0.5,
        confidence_scale: float = 0.5,
        explain: Literal["label", "predicted"] = "label",
        explainer_options: Mapping[str, Any] | None = None,
        random_grid: int | None = 8,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < salient_fraction <= 0.5:
            # Above 0.5 the salient and non-salient occlusions would overlap.
            raise ValueError(f"salient_fraction must be in (0, 0.5], got {salient_fraction}")
        if target not in EDDA_TARGETS:
            raise ValueError(f"target must be one of {EDDA_TARGETS}, got {target!r}")
        if policy not in EDDA_POLICIES:
            raise ValueError(f"policy must be one of {EDDA_POLICIES}, got {policy!r}")
        for name, value in (("confidence", confidence), ("confidence_scale", confidence_scale)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if random_grid is not None and random_grid < 1:
            raise ValueError(f"random_grid must be a positive int or None, got {random_grid}")
        if explain not in ("label", "predicted"):
            raise ValueError(f"explain must be 'label' or 'predicted', got {explain!r}")
        check_fill(fill)
        # A plain object, so that neither an explainer object nor the model it wraps becomes a submodule.
        self.source = ExplainerSource(explainer, explainer_options)
        self.salient_fraction = float(salient_fraction)
        self.target = target
        self.policy = policy
        self.fill = fill
        self.confidence = float(confidence)
        self.confidence_scale = float(confidence_scale)
        self.explain = explain
        self.random_grid = random_grid
        self.seed = seed
        # The random-occlusion control: the registry's "random" explainer, built once per model.
        self._random_source = ExplainerSource("random", {"grid": self.random_grid, "seed": self.seed})

    @property
    def explainer(self) -> str | Explainer | SaliencyFn:
        """The explainer as given."""
        return self.source.explainer

    # -- the transform ----------------------------------------------------------------------------------------
    def forward(
        self,
        images: Tensor,
        labels: Tensor,
        model: nn.Module | None = None,
        *,
        params: EDDAParams | None = None,
        generator: torch.Generator | None = None,
    ) -> EDDABatch:
        """Build the occluded copies of a batch: :meth:`draw` (unless ``params`` are given), then :meth:`apply`.

        Args:
            images: normalised images.
            labels: integer class labels.
            model: images -> logits; used in eval mode and left untouched. Not needed with ``params``.
            params: replay these parameters (no explainer, no model call) instead of drawing new ones.
            generator: random source of the tie-break and of ``fill="noise"`` (``None``: the global RNG).

        Returns:
            :class:`EDDABatch` with ``M <= 2B`` rows.

        Shape:
            - images: ``(B, C, H, W)``; labels: ``(B,)``.
        """
        if params is None:
            params = self.draw(images, labels, model, generator=generator)  # type: ignore[arg-type]
        return self.apply(images, labels, params)

    def draw(
        self, images: Tensor, labels: Tensor, model: nn.Module, *, generator: torch.Generator | None = None
    ) -> EDDAParams:
        """Explain the batch and decide the occluded regions, the targets and (for ``"noise"``) the fill.

        Args:
            images: normalised images.
            labels: integer class labels in ``[0, K)``.
            model: images -> logits; used in eval mode and left untouched.
            generator: random source of the tie-break and of ``fill="noise"`` (``None``: the global RNG). The
                random maps of ``policy="random"`` use ``seed`` instead.

        Returns:
            :class:`EDDAParams`.

        Shape:
            - images: ``(B, C, H, W)``; labels: ``(B,)``.
        """
        check_images(images)
        labels = check_labels(labels, images.shape[0], "labels")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module mapping images to logits, got {type(model).__name__}")
        images = images.detach()
        saliency, flat, logits = self._saliency(images, labels, model)
        if logits.dim() != 2 or logits.shape[0] != images.shape[0]:
            raise ValueError(f"model must return logits (B, K) = ({images.shape[0]}, K), got {tuple(logits.shape)}")
        num_classes = logits.shape[1]
        resolve_targets(labels, labels.shape[0], num_classes, labels.device)  # range check, one host sync

        # Occluded = the top-k (salient) / bottom-k (non-salient) pixels of one strict order, so the two regions
        # are disjoint with exactly k pixels each. ReLU'd maps are often exactly 0 over large areas: a tiny random
        # key breaks those ties at random (topk alone would always pick the first-in-memory pixels).
        noise = torch.rand(saliency.shape, generator=generator, dtype=saliency.dtype, device=saliency.device)
        order = saliency + noise * TIE_BREAK
        salient_region = keep_mask(order, keep_fraction=self.salient_fraction)
        nonsalient_region = keep_mask(-order, keep_fraction=self.salient_fraction)
        fill = None
        if self.fill == "noise":  # the only random fill: drawn here so that apply() is deterministic
            fill = fill_like(torch.cat((images, images)), "noise", generator=generator)
        one_hot = F.one_hot(labels, num_classes).to(logits.dtype)
        return EDDAParams(
            salient_keep=~salient_region,
            nonsalient_keep=~nonsalient_region,
            salient_targets=self._salient_targets(one_hot, logits),
            nonsalient_targets=one_hot,
            saliency=saliency,
            flat=flat,
            logits=logits,
            fill=fill,
        )

    def apply(self, images: Tensor, labels: Tensor, params: EDDAParams) -> EDDABatch:
        """Occlude and select the rows by drawn (or hand-made) parameters: no explainer, no model call.

        Args:
            images: the images the parameters were drawn for.
            labels: integer class labels.
            params: :class:`EDDAParams`.

        Returns:
            :class:`EDDABatch`.

        Shape:
            - images: ``(B, C, H, W)``; labels: ``(B,)``.
        """
        check_images(images)
        labels = check_labels(labels, images.shape[0], "labels")
        self._check_params(images, params)
        images = images.detach()
        doubled = torch.cat((images, images))
        keep = torch.cat((params.salient_keep, params.nonsalient_keep))
        occluded = apply_mask(doubled, keep, self.fill if params.fill is None else params.fill)
        targets = torch.cat((params.salient_targets, params.nonsalient_targets))
        b = images.shape[0]
        is_salient = torch.arange(2 * b, device=images.device) < b
        keep_row = ~torch.cat((params.flat, params.flat))
        if self.target == "exclude":
            keep_row &= ~is_salient
        rows = keep_row.nonzero().squeeze(1)  # one host sync: the number of rows fixes the output size
        source = rows.remainder(b)
        return EDDABatch(
            images=occluded.index_select(0, rows),
            targets=targets.index_select(0, rows),
            salient=is_salient.index_select(0, rows),
            nonsalient=~is_salient.index_select(0, rows),
            source=source,
            labels=labels.index_select(0, source),
            saliency=params.saliency,
            flat=params.flat,
            logits=params.logits,
        )

    @staticmethod
    def _check_params(images: Tensor, params: EDDAParams) -> None:
        if not isinstance(params, EDDAParams):
            raise TypeError(f"params must be EDDAParams (from EDDAAugment.draw), got {type(params).__name__}")
        b, _, h, w = images.shape
        for name in ("salient_keep", "nonsalient_keep"):
            value = getattr(params, name)
            if not isinstance(value, Tensor) or value.dtype != torch.bool or value.shape != (b, 1, h, w):
                desc = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"params.{name} must be a bool tensor of shape {(b, 1, h, w)}, got {desc}")
        k = params.salient_targets.shape[-1] if isinstance(params.salient_targets, Tensor) else -1
        for name in ("salient_targets", "nonsalient_targets"):
            value = getattr(params, name)
            if not isinstance(value, Tensor) or value.dim() != 2 or value.shape != (b, k):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"params.{name} must have shape (B, K) = ({b}, K) like params.salient_targets, "
                                 f"got {shape}")
        if not isinstance(params.flat, Tensor) or params.flat.dtype != torch.bool or params.flat.shape != (b,):
            raise ValueError(f"params.flat must be a bool tensor of shape ({b},)")
        doubled = (2 * b, *images.shape[1:])
        if params.fill is not None and (not isinstance(params.fill, Tensor) or params.fill.shape != doubled):
            raise ValueError(f"params.fill must be None or a tensor of shape {doubled}")

    def _salient_targets(self, one_hot: Tensor, logits: Tensor) -> Tensor:
        """``(B, K)`` targets of the salient-occluded copies (computed for ``"exclude"`` too, then dropped)."""
        k = one_hot.shape[1]
        if self.target == "uniform":
            return torch.full_like(one_hot, 1.0 / k)
        if self.target == "lower_confidence":
            probs = logits.float().softmax(dim=1).to(one_hot.dtype)
            lowered = probs * torch.where(one_hot.bool(), self.confidence_scale, 1.0)
            # A label probability of 1 scaled to 0 leaves nothing: fall back to uniform rather than dividing by 0.
            total = lowered.sum(dim=1, keepdim=True)
            return torch.where(total > 0, lowered / total.clamp_min(torch.finfo(total.dtype).tiny), 1.0 / k)
        return self.confidence * one_hot + (1.0 - self.confidence) / k

    def _saliency(self, images: Tensor, labels: Tensor, model: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised maps ``(B, 1, H, W)``, flat flags ``(B,)`` and eval-mode logits ``(B, K)``."""
        if self.policy == "random":
            explanation = self._random_source.for_model(model).explain(images, labels)
        else:
            targets = labels if self.explain == "label" else None
            explanation = explain_normalized(self.source.for_model(model), images, targets, model)
        saliency, flat, logits = explanation.saliency, explanation.flat, explanation.logits
        if logits is None:  # perturbation backends and plain callables do not report logits
            with isolated(model), torch.no_grad():
                logits = logits_of(model(images))
        return saliency, flat, logits.detach()

    def extra_repr(self) -> str:
        return (
            f"explainer={self.source.name!r}, salient_fraction={self.salient_fraction}, target={self.target!r}, "
            f"policy={self.policy!r}, fill={self.fill!r}, confidence={self.confidence}, "
            f"confidence_scale={self.confidence_scale}, explain={self.explain!r}"
        )
