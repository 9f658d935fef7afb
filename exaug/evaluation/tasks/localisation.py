"""Localisation against the dataset's object masks or boxes: pointing game, relevance mass accuracy and
relevance rank accuracy (Arras et al. 2022) of the evaluation's explainer."""

from __future__ import annotations

from typing import Any, Mapping

from ...metrics import LOCALISATION_KEYS, Localisation
from ..annotations import object_masks
from ..context import EvalBatch, EvalContext
from ..output import fmt, md_table
from .base import EvaluationTask
from .registry import register_task

__all__ = ["LocalisationTask", "explained_targets"]

#: Row labels of the report.
LABELS: dict[str, str] = {"pointing_game": "pointing game", "relevance_mass": "relevance mass accuracy",
                          "relevance_rank": "relevance rank accuracy"}


def explained_targets(settings: Mapping[str, Any], task: str) -> str:
    """The validated ``target`` option of an explanation task: ``"label"`` or ``"predicted"``."""
    target = settings["target"]
    if target not in ("label", "predicted"):
        raise ValueError(f"{task} target must be 'label' or 'predicted', got {target!r}")
    return target


@register_task("localisation")
class LocalisationTask(EvaluationTask):
    """Pointing game, relevance mass and rank accuracy inside the object (``target``: ``label`` or
    ``predicted`` class explained)."""

    options = {"target": "label"}
    requires = frozenset({"explainer", "object_masks"})
    measures_explanations = True

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        self.target = explained_targets(settings, self.name)
        self.metric = Localisation()

    def update(self, batch: EvalBatch) -> None:
        masks = object_masks(self.ctx.dataset, batch.indices, tuple(batch.images.shape[-2:]))
        if masks is None:
            raise ValueError("localisation requires a dataset with object masks or boxes")
        targets = batch.labels if self.target == "label" else None
        saliency = self.ctx.explainer.explain(batch.images, targets).saliency  # type: ignore[union-attr]
        # Images without a known box (empty mask) are left out by the metric and counted.
        self.metric.update(saliency, masks.to(saliency.device))

    def finish(self) -> dict[str, Any]:
        if int(self.metric.count) == 0:
            raise ValueError("no evaluated image has a known object mask / box, so localisation is undefined")
        return self.metric.compute()

    @classmethod
    def markdown(cls, result: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
        """The three scores with their direction, and how many images had a mask."""
        rows = [[LABELS[key], "higher", fmt(result[key], 4)] for key in LOCALISATION_KEYS]
        return ["## Localisation", "",
                f"Saliency of the {settings.get('target', 'label')} class against the object mask (Arras et al. "
                f"2022), {result['images']} images ({result['images_without_mask']} without a known mask left "
                "out). Pointing game: the share of the map's maxima inside the object; relevance mass: the share "
                "of positive saliency inside it; relevance rank: the share of the |object| most salient pixels "
                "inside it. Chance level is the object's area fraction.", "",
                *md_table(["metric", "better", "value"], rows), ""]
