"""The run's masked views: how often they are classified correctly, how much they keep, and their t-SNE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...metrics import compute_embeddings, plot_tsne
from ..context import EvalBatch, EvalContext
from .base import EvaluationTask
from .registry import register_task

__all__ = ["MaskedViewsTask"]


@register_task("tsne")
class MaskedViewsTask(EvaluationTask):
    """Masked views of the run's augment: share classified correctly, kept area, t-SNE with the originals."""

    options = {"max_images": 500, "max_classes": 5, "perplexity": 30.0}
    requires = frozenset({"explainer"})

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        self.original: list[Tensor] = []
        self.views: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.embedded = 0
        self.correct = 0
        self.kept = 0.0
        self.count = 0

    def update(self, batch: EvalBatch) -> None:
        if self.ctx.augment is None:
            raise ValueError("tsne requires the explainer (and so the run's augment) in the context")
        views = self.ctx.augment(batch.images, (batch.images, batch.images), batch.labels, self.ctx.model)
        assert views.masked is not None and views.correct is not None and views.keep is not None
        self.correct += int(views.correct.sum())
        self.kept += float(views.keep.float().mean(dim=(1, 2, 3)).sum())
        self.count += batch.images.shape[0]
        take = min(batch.images.shape[0], self.settings["max_images"] - self.embedded)
        if take > 0:
            self.original.append(batch.embeddings[:take])
            self.views.append(compute_embeddings(self.ctx.encoder, views.masked[:take], self.ctx.batch_size))
            self.labels.append(batch.labels[:take])
            self.embedded += take

    def finish(self) -> dict[str, Any]:
        return {"masked_correct": self.correct / self.count, "kept_area": self.kept / self.count,
                "images": self.embedded}

    def figures(self, out: Path) -> dict[str, str]:
        labels = torch.cat(self.labels)
        try:
            plot_tsne(torch.cat(self.original), labels, torch.cat(self.views), labels, out / "tsne.png",
                      max_classes=self.settings["max_classes"], perplexity=self.settings["perplexity"],
                      seed=self.ctx.seed, title="encoder features: x original, o explanation-masked view")
        except (ImportError, ValueError) as err:  # scikit-learn missing, or too few points of the shown classes
            self.ctx.notes.append(f"t-SNE figure not drawn: {err}")
            return {}
        return {"tsne": "tsne.png"}
