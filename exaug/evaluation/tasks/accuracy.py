"""Classification accuracy: top-k of the linear classifier and weighted kNN on encoder features."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...metrics import Accuracy, compute_embeddings, knn_accuracy
from ..context import EvalBatch, EvalContext
from .base import EvaluationTask, as_tuple
from .registry import register_task

__all__ = ["AccuracyTask"]


@register_task("accuracy")
class AccuracyTask(EvaluationTask):
    """Top-k accuracy of the linear classifier; kNN top-1 on encoder features against a bank of train images.

    ``knn_train_samples=None``: as many train images as the run trained on (its ``train_samples``).
    """

    options = {"ks": (1, 5), "knn_k": 20, "knn_temperature": 0.07, "knn_train_samples": None}

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        settings["ks"] = as_tuple(settings["ks"])
        if settings["knn_train_samples"] is None:
            settings["knn_train_samples"] = ctx.run.config.train_samples
        self.metric = Accuracy(ks=settings["ks"])
        self.feats: list[Tensor] = []
        self.labels: list[Tensor] = []

    def update(self, batch: EvalBatch) -> None:
        self.metric.update(batch.logits, batch.labels)
        self.feats.append(batch.embeddings)
        self.labels.append(batch.labels)

    def finish(self) -> dict[str, Any]:
        ctx = self.ctx
        out: dict[str, Any] = {f"top{k}": value for k, value in self.metric.compute().items()}
        bank = ctx.run.dataset("train", self.settings["knn_train_samples"])
        bank_feats, bank_labels = [], []
        for images, labels in ctx.bar(ctx.loader(bank), "kNN bank (train split)"):
            bank_feats.append(compute_embeddings(ctx.encoder, images.to(ctx.device), ctx.batch_size))
            bank_labels.append(labels.to(ctx.device))
        out["knn_top1"] = float(knn_accuracy(
            torch.cat(bank_feats), torch.cat(bank_labels), torch.cat(self.feats), torch.cat(self.labels),
            k=self.settings["knn_k"], temperature=self.settings["knn_temperature"], num_classes=ctx.run.num_classes,
        ))
        out["knn_train_images"] = len(bank)  # type: ignore[arg-type]
        return out
