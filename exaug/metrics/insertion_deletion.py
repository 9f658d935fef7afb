"""Insertion and deletion curves (Petsiuk et al. 2018, RISE; used by COCOA and CGC) for any scalar score.

Pixels are ranked by decreasing saliency (ties by position). With ``n`` steps, step ``t = 0..n`` changes the
``k_t`` top-ranked pixels:

* **deletion**: start from the image, replace the top ``k_t`` pixels by the baseline (lower AUC is better: the
  score should collapse as soon as the salient pixels are gone);
* **insertion**: start from the baseline, copy the top ``k_t`` pixels from the image (higher AUC is better).

The default baseline is the blurred image (Gaussian, kernel 21, sigma 5: COCOA's and RISE's). The curve is
``score(step image t)`` at ``x_t = t / n`` and the AUC is the trapezoid rule on ``[0, 1]``::

    AUC = (sum_t c_t - (c_0 + c_n) / 2) / n

Step schedules: ``steps=n`` gives ``k_t = round(t * H * W / n)`` (COCOA: 50 steps); ``pixels_per_step=s`` gives
RISE/CGC's ``k_t = min(t * s, H * W)`` with ``n = ceil(H * W / s)`` (the last step may be partial; the x
spacing stays uniform, exactly as RISE's ``auc``).

The score is any function ``score_fn(images (N, C, H, W), rows (N,)) -> (N,)``, where ``rows[i]`` is the index,
in the explained batch, of the image that step image ``i`` comes from: :func:`class_probability_score` (the
softmax probability of each image's explained class) or :func:`representation_similarity_score` (cosine
similarity of the representation to a reference embedding per image, label-free as in COCOA).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..augment.masking import Fill, fill_like
from ..explainers import Explainer
from ..utils.checks import check_images, check_labels
from .base import Metric, check_model, check_saliency, explainer_from, predict

__all__ = [
    "CurveResult",
    "InsertionDeletion",
    "ScoreFn",
    "class_probability_score",
    "insertion_deletion",
    "representation_similarity_score",
    "step_counts",
]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
MODES: tuple[str, ...] = ("insertion", "deletion")


class CurveResult(NamedTuple):
    """Output of :func:`insertion_deletion`.

    Attributes:
        auc: ``(B,)`` trapezoid area under each curve.
        curves: ``(B, n + 1)`` score after each step (step 0 = nothing changed).
        x: ``(n + 1,)`` abscissae ``t / n``.
    """

    auc: Tensor
    curves: Tensor
    x: Tensor


def class_probability_score(model: nn.Module, targets: Tensor) -> ScoreFn:
    """Score = softmax probability of ``targets[row]`` under ``model`` (eval mode, no autograd, untouched).

    Args:
        model: images -> logits ``(N, K)``.
        targets: ``(B,)`` class per explained image.
    """
    check_model(model)
    targets = targets.long()

    def score(images: Tensor, rows: Tensor) -> Tensor:
        probs = predict(model, images).float().softmax(dim=1)
        return probs.gather(1, targets.to(probs.device)[rows].unsqueeze(1)).squeeze(1)

    return score


def representation_similarity_score(encoder: nn.Module, references: Tensor) -> ScoreFn:
    """Score = cosine similarity between ``encoder(step image)`` and ``references[row]``.

    With ``references = encoder(images)`` this is the label-free "similarity to the explicand's own
    representation" of COCOA / RELAX.

    Args:
        encoder: images -> embeddings ``(N, D)`` (eval mode, no autograd, untouched).
        references: ``(B, D)`` one reference embedding per explained image.
    """
    check_model(encoder)
    if not isinstance(references, Tensor) or references.dim() != 2:
        raise ValueError("references must be a (B, D) tensor of embeddings")
    refs = F.normalize(references.detach().float(), dim=1)

    def score(images: Tensor, rows: Tensor) -> Tensor:
        feats = F.normalize(predict(encoder, images).float().flatten(1), dim=1)
        return (feats * refs.to(feats.device)[rows]).sum(dim=1)

    return score


def step_counts(num_pixels: int, steps: int = 50, pixels_per_step: int | None = None) -> Tensor:
    """``(n + 1,)`` int64 number of changed pixels after each step (see the module docstring)."""
    if pixels_per_step is not None:
        if pixels_per_step < 1:
            raise ValueError(f"pixels_per_step must be >= 1, got {pixels_per_step}")
        n = math.ceil(num_pixels / pixels_per_step)
        return (torch.arange(n + 1) * pixels_per_step).clamp_(max=num_pixels)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.round(torch.arange(steps + 1, dtype=torch.float64) * num_pixels / steps).long()


def insertion_deletion(
    score_fn: ScoreFn,
    images: Tensor,
    saliency: Tensor,
    *,
    mode: Literal["insertion", "deletion"] = "deletion",
    steps: int = 50,
    pixels_per_step: int | None = None,
    baseline: Fill | float | Tensor = "blur",
    batch_size: int = 512,
) -> CurveResult:
    """Insertion or deletion curves and AUCs of a batch.

    All step images are indexed from the batch, built ``batch_size`` at a time and scored in the same chunk, so
    memory is bounded by ``batch_size`` images whatever ``B`` and the number of steps.

    Args:
        score_fn: ``(step images (N, C, H, W), rows (N,)) -> (N,)`` scores (see the module docstring).
        images: ``(B, C, H, W)``.
        saliency: ``(B, 1, H, W)``; larger = more important.
        mode: ``"insertion"`` or ``"deletion"``.
        steps: number of steps ``n`` (ignored with ``pixels_per_step``).
        pixels_per_step: RISE/CGC schedule, ``s`` pixels per step.
        baseline: ``"blur"`` (default), ``"zero"``, ``"mean"``, ``"noise"``, a number, or a tensor broadcastable
            to ``images``.
        batch_size: step images built and scored per chunk.

    Returns:
        :class:`CurveResult` (``auc`` ``(B,)``, ``curves`` ``(B, n + 1)``, ``x`` ``(n + 1,)``).
    """
    if not callable(score_fn):
        raise TypeError("score_fn must be callable: (images (N, C, H, W), rows (N,)) -> scores (N,)")
    check_images(images)
    check_saliency(saliency, images)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = images.detach()
    b, c, h, w = images.shape
    device = images.device
    counts = step_counts(h * w, steps, pixels_per_step).to(device)
    n = counts.numel() - 1
    base = baseline.to(images) if isinstance(baseline, Tensor) else fill_like(images, baseline)
    base = base.expand_as(images)
    # Rank of every pixel in saliency order (0 = most salient); a pixel is changed at step t iff rank < k_t.
    order = saliency.detach().flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=device).expand(b, -1))
    # Deletion moves pixels from the image to the baseline, insertion the other way round.
    start, end = (images, base) if mode == "deletion" else (base, images)
    scores = []
    with torch.no_grad():
        for first in range(0, b * (n + 1), batch_size):
            flat_idx = torch.arange(first, min(first + batch_size, b * (n + 1)), device=device)
            rows, step = flat_idx // (n + 1), flat_idx % (n + 1)
            changed = (rank[rows] < counts[step].unsqueeze(1)).view(-1, 1, h, w)
            out = score_fn(torch.where(changed, end[rows], start[rows]), rows)
            if not isinstance(out, Tensor) or out.shape != (flat_idx.numel(),):
                raise ValueError(
                    f"score_fn must return a ({flat_idx.numel()},) tensor, got {getattr(out, 'shape', type(out))}"
                )
            scores.append(out.detach().float())
    curves = torch.cat(scores).view(b, n + 1)
    auc = (curves.sum(dim=1) - 0.5 * (curves[:, 0] + curves[:, -1])) / n
    x = torch.arange(n + 1, device=curves.device, dtype=curves.dtype) / n
    return CurveResult(auc, curves, x)


class InsertionDeletion(Metric):
    """Streaming insertion / deletion AUC of an explainer with the class-probability score.

    The explained (and scored) class is the model's prediction unless ``targets`` are passed to :meth:`update`.
    For another score (e.g. representation similarity), call :func:`insertion_deletion` directly.

    Insertion: higher is better; deletion: lower is better (``higher_is_better``, per reported value).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 3))
        >>> metric = InsertionDeletion("gradcam", model, steps=4, target_layer="0")
        >>> metric.update(torch.randn(2, 3, 8, 8))
        >>> result = metric.compute()
        >>> sorted(result), len(result["deletion"]["curve"]), result["x"]
        (['deletion', 'insertion', 'x'], 5, [0.0, 0.25, 0.5, 0.75, 1.0])

    Args:
        explainer_or_name: an explainer or a registered name (built on ``model``).
        model: the classifier.
        modes: which curves to compute.
        steps: see :func:`insertion_deletion`.
        pixels_per_step: see :func:`insertion_deletion`.
        baseline: see :func:`insertion_deletion`.
        batch_size: see :func:`insertion_deletion`.
        target_layer: layer for an explainer built by name.
        explainer_options: options for an explainer built by name.
    """

    higher_is_better = {"insertion": True, "deletion": False}

    def __init__(
        self,
        explainer_or_name: Explainer | str,
        model: nn.Module,
        *,
        modes: Sequence[str] = MODES,
        steps: int = 50,
        pixels_per_step: int | None = None,
        baseline: Fill | float = "blur",
        batch_size: int = 512,
        target_layer: Any = None,
        explainer_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = check_model(model)
        self.explainer = explainer_from(explainer_or_name, model, target_layer, explainer_options)
        self.modes = tuple(modes)
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes!r}")
        self.options = dict(steps=steps, pixels_per_step=pixels_per_step, baseline=baseline, batch_size=batch_size)
        super().__init__()
        self.add_state("auc_sum", None, "sum")  # (len(modes),) AUCs summed over images
        self.add_state("curve_sum", None, "sum")  # (len(modes), n + 1) curves summed over images
        self.add_state("x", None, "same")  # (n + 1,) abscissae: fixed by the step schedule, not by the data
        self.add_state("count", 0, "sum")

    def update(self, images: Tensor, targets: Tensor | None = None) -> None:
        """Explain and score ``images`` ``(B, C, H, W)`` for ``targets`` ``(B,)`` (default: predicted class)."""
        check_images(images)
        if targets is None and self.explainer.model is not self.model:
            targets = predict(self.model, images).argmax(dim=1)
        if targets is not None:
            targets = check_labels(torch.as_tensor(targets, device=images.device), images.shape[0])
        explanation = self.explainer.explain(images, targets)
        score = class_probability_score(self.model, explanation.targets)
        results = [insertion_deletion(score, images, explanation.saliency, mode=mode, **self.options)
                   for mode in self.modes]
        self.accumulate(
            auc_sum=torch.stack([r.auc.sum() for r in results]),
            curve_sum=torch.stack([r.curves.sum(dim=0) for r in results]),
            x=results[0].x,
            count=images.shape[0],
        )

    def compute(self) -> dict[str, Any]:
        """``{mode: {"auc": mean AUC, "curve": mean curve (list)}, "x": abscissae (list)}``."""
        self._require_data(self.count)
        assert self.auc_sum is not None and self.curve_sum is not None and self.x is not None
        out: dict[str, Any] = {
            mode: {"auc": float(self.auc_sum[i]) / self.count, "curve": (self.curve_sum[i] / self.count).tolist()}
            for i, mode in enumerate(self.modes)
        }
        out["x"] = self.x.tolist()
        return out
