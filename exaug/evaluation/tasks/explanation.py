"""Explanation quality: drop / increase, infidelity, insertion / deletion and the Content Heatmap.

Each task is the streaming class of :mod:`exaug.metrics` on the run's explainer (or the one chosen for the
evaluation), fed the evaluated batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...metrics import ContentHeatmap, DropIncrease, Infidelity, InsertionDeletion
from ..annotations import object_masks
from ..context import EvalBatch, EvalContext
from ..figures import plot_insertion_deletion
from .base import EvaluationTask, as_tuple
from .registry import register_task

__all__ = ["ContentHeatmapTask", "DropIncreaseTask", "InfidelityTask", "InsertionDeletionTask", "keep_key"]


def keep_key(q: float) -> str:
    """JSON key of a keep fraction: ``0.3`` -> ``"0.3"`` (``repr`` of the float, so keys round-trip)."""
    return repr(float(q))


@register_task("drop_increase")
class DropIncreaseTask(EvaluationTask):
    """Drop / increase in confidence when only the most salient pixels are kept (``fill=None``: the run's fill)."""

    options = {"keep_fractions": (0.15, 0.30, 0.45), "fill": None}
    requires = frozenset({"explainer"})
    measures_explanations = True

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        if settings["fill"] is None:
            settings["fill"] = ctx.run.config.mask_fill
        settings["keep_fractions"] = as_tuple(settings["keep_fractions"])
        self.metric = DropIncrease(ctx.explainer, ctx.model, settings["keep_fractions"], settings["fill"])

    def update(self, batch: EvalBatch) -> None:
        self.metric.update(batch.images)

    def finish(self) -> dict[str, Any]:
        scores = self.metric.compute()
        return {"keep": {keep_key(q): values for q, values in scores.items()}, "n_flat": int(self.metric.n_flat)}


@register_task("infidelity")
class InfidelityTask(EvaluationTask):
    """Infidelity (Yeh et al. 2019) of the normalised saliency, through Captum."""

    options = {"perturbation": "gaussian", "noise_std": 0.003, "n_perturb_samples": 10, "normalize": False,
               "output": "logit"}
    requires = frozenset({"explainer"})
    measures_explanations = True

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        self.metric = Infidelity(ctx.explainer, ctx.model, seed=ctx.seed, **settings)

    def update(self, batch: EvalBatch) -> None:
        self.metric.update(batch.images)

    def finish(self) -> dict[str, Any]:
        return {"mean": self.metric.compute()}


@register_task("insertion_deletion")
class InsertionDeletionTask(EvaluationTask):
    """Insertion and deletion curves (probability of the explained class) and their AUCs."""

    options = {"steps": 50, "baseline": "blur", "batch_size": 512}
    requires = frozenset({"explainer"})
    measures_explanations = True

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        self.metric = InsertionDeletion(ctx.explainer, ctx.model, **settings)
        self.result: dict[str, Any] = {}

    def update(self, batch: EvalBatch) -> None:
        self.metric.update(batch.images)

    def finish(self) -> dict[str, Any]:
        res = self.metric.compute()
        self.result = {"insertion_auc": res["insertion"]["auc"], "deletion_auc": res["deletion"]["auc"],
                       "x": res["x"], "insertion_curve": res["insertion"]["curve"],
                       "deletion_curve": res["deletion"]["curve"]}
        return self.result

    def figures(self, out: Path) -> dict[str, str]:
        plot_insertion_deletion(self.result, out / "insertion_deletion.png")
        return {"insertion_deletion": "insertion_deletion.png"}


@register_task("content_heatmap")
class ContentHeatmapTask(EvaluationTask):
    """Share of the saliency mass inside the object (``target``: explain the ``label`` or ``predicted`` class)."""

    options = {"target": "label"}
    requires = frozenset({"explainer", "object_masks"})
    measures_explanations = True

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        if settings["target"] not in ("label", "predicted"):
            raise ValueError(f"content_heatmap target must be 'label' or 'predicted', got {settings['target']!r}")
        self.metric = ContentHeatmap()
        self.skipped_images = 0

    def update(self, batch: EvalBatch) -> None:
        masks = object_masks(self.ctx.dataset, batch.indices, tuple(batch.images.shape[-2:]))
        if masks is None:
            raise ValueError("content_heatmap requires a dataset with object masks or boxes")
        # Tiny ImageNet images with an unknown box have an empty mask: they cannot be scored.
        known = masks.flatten(1).any(dim=1)
        self.skipped_images += int((~known).sum())
        if not bool(known.any()):
            return
        rows = known.to(batch.images.device)
        images, labels, masks = batch.images[rows], batch.labels[rows], masks[known]
        targets = labels if self.settings["target"] == "label" else None
        saliency = self.ctx.explainer.explain(images, targets).saliency  # type: ignore[union-attr]
        self.metric.update(saliency, masks.to(saliency.device))

    def finish(self) -> dict[str, Any]:
        if self.metric.count == 0:
            raise ValueError("no evaluated image has a known object mask / box, so the Content Heatmap is undefined")
        return {"mean": self.metric.compute(), "images": self.metric.count, "images_without_mask": self.skipped_images}
