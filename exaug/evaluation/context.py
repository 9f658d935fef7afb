"""What every evaluation task is given: the run and its settings (:class:`EvalContext`) and one batch with the
results several tasks share, computed once on first use (:class:`EvalBatch`).

The two small builders below are the only places where the evaluation turns a run into an explainer
(:func:`build_run_explainer`) and into the run's masking augment (:func:`~exaug.training.methods.build_mask_augment`, the one the trainer uses).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..augment import explainer_preset_options
from ..data import dataset_stats
from ..explainers import Explainer, explainer_uses_layer
from ..metrics import compute_embeddings, fgsm
from ..metrics.base import explainer_from, predict
from ..training.methods import build_mask_augment
from ..training.run import TrainedRun

__all__ = ["EvalBatch", "EvalContext", "build_run_explainer"]


def build_run_explainer(
    run: TrainedRun, name: str | None = None, layer: str | None = None
) -> tuple[Explainer, dict[str, Any]]:
    """The run's explainer (its name, layer and options from the run's config) or ``name`` at the run's layer.

    Args:
        run: the loaded run.
        name: a registered explainer name; ``None``: the run's own.
        layer: target layer (dotted path in encoder + classifier); ``None``: the layer training resolved.

    Returns:
        ``(explainer, info)``; ``info`` is the ``explainer`` section of ``eval.json``.
    """
    own = name is None or name == run.config.explainer
    name = run.config.explainer if name is None else name
    # The run's own explainer keeps the options its preset added in training (relu=False for "reference").
    options = {**explainer_preset_options(run.config.explainer_preset, name), **run.config.explainer_options} \
        if own else {}
    if layer is None and "target_layer" not in options and explainer_uses_layer(name):
        layer = run.resolved.get("explainer_layer")
    explainer = explainer_from(name, run.classifier_model, layer, options)
    info = {"name": name, "target_layer": explainer.layer_name if explainer.uses_layer else None,
            "options": {k: v for k, v in options.items() if k != "target_layer"}, "own": own}
    return explainer, info


class EvalContext:
    """The run, its networks, the explainer and the evaluation settings, shared by every task.

    Args:
        run: the loaded run (networks in eval mode on ``device``).
        dataset: the evaluated split.
        explainer: the explainer (``None`` when no selected task requires one); with it, :attr:`augment` is the
            run's masking augment.
        seed: seed of every random draw.
        batch_size: images per batch.
        device: where batches go.
        progress: show tqdm bars.

    Attributes:
        model: images -> logits (encoder + linear classifier).
        encoder: images -> features.
        mean, std: the dataset's normalisation (pixels = images * std + mean).
        notes: remarks collected for ``eval.json`` / ``eval.md``.
    """

    def __init__(self, run: TrainedRun, dataset: Dataset, *, explainer: Explainer | None = None, seed: int = 0,
                 batch_size: int = 64, device: torch.device | None = None, progress: bool = False) -> None:
        self.run = run
        self.model: nn.Module = run.classifier_model
        self.encoder: nn.Module = run.classifier_model.encoder
        self.explainer = explainer
        self.dataset = dataset
        self.seed = seed
        self.batch_size = batch_size
        self.device = device if device is not None else next(self.model.parameters()).device
        self.progress = progress
        self.mean, self.std = dataset_stats(run.config.dataset)
        self.notes: list[str] = []
        self.augment = build_mask_augment(run.config, explainer) if explainer is not None else None

    def loader(self, dataset: Dataset) -> DataLoader:
        """An unshuffled loader of ``dataset`` with the evaluation's batch size and the run's worker count."""
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.run.config.workers,
                          pin_memory=self.device.type == "cuda")

    def bar(self, iterable: Any, desc: str, total: int | None = None) -> Any:
        """``iterable`` wrapped in a tqdm bar (disabled without ``progress``)."""
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit="batch", leave=False, dynamic_ncols=True,
                    disable=not self.progress)


class EvalBatch:
    """One batch of the evaluated split with the results several tasks share, computed on first use.

    Args:
        ctx: the evaluation context.
        number: position of the batch in the pass (0-based).
        first: index in the dataset of the batch's first image.
        images: ``(B, C, H, W)`` normalised images.
        labels: ``(B,)`` int labels.

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; logits: ``(B, K)``; embeddings: ``(B, D)``.
    """

    def __init__(self, ctx: EvalContext, number: int, first: int, images: Tensor, labels: Tensor) -> None:
        self.ctx = ctx
        self.number = number
        self.indices = range(first, first + images.shape[0])
        self.images = images.to(ctx.device)
        self.labels = labels.to(ctx.device)
        self._fgsm_logits: dict[float, Tensor] = {}

    @functools.cached_property
    def logits(self) -> Tensor:
        """``(B, K)`` clean logits."""
        return predict(self.ctx.model, self.images)

    @functools.cached_property
    def embeddings(self) -> Tensor:
        """``(B, D)`` encoder features of the images."""
        return compute_embeddings(self.ctx.encoder, self.images, self.ctx.batch_size)

    def fgsm_logits(self, eps: float) -> Tensor:
        """``(B, K)`` logits of the FGSM images (true labels, pixel-space ``eps``); shared by calibration and
        adversarial robustness."""
        if eps not in self._fgsm_logits:
            adversarial = fgsm(self.ctx.model, self.images, self.labels, eps=eps, mean=self.ctx.mean, std=self.ctx.std)
            self._fgsm_logits[eps] = predict(self.ctx.model, adversarial)
        return self._fgsm_logits[eps]
