"""The contrastive family of the ExCon paper: SupCon, ExCon, ExConB (Algorithm 1) and two-stage SupConOri.

* ``supcon``, ``excon``, ``exconb``: every epoch, one encoder epoch with the contrastive loss (the linear
  classifier is not updated, it only serves the explanations), then one linear-classifier epoch on frozen
  encoder features, then validation. ``excon``/``exconb`` add :class:`~exaug.ExplanationMaskAugment` from
  ``exp_start_epoch`` on; with ``saliency_refresh_epochs`` > 1 it reuses each image's map from the trainer's
  :class:`~exaug.augment.SaliencyCache` between refreshes. ``exconb`` uses :class:`~exaug.losses.ExConBLoss`
  with the wrongly classified masks as background negatives.
* ``supcon_ori``: the classic two-stage schedule, all encoder epochs, then all classifier epochs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...augment import AugmentedBatch, ExplanationMaskAugment
from ...losses import ExConBLoss, SupConLoss
from .base import CLASSIFIER_KEYS, VALIDATION_KEYS, TrainingMethod
from .registry import register_method

__all__ = ["ContrastiveMethod", "ExCon", "ExConB", "SupCon", "TwoStageSupCon", "build_mask_augment"]

#: Row keys of an encoder epoch while explanation masks are on (plus ``saliency_cache_hits`` with a cache).
EXPLANATION_KEYS = ("masked_correct", "kept_area", "background_per_batch")


def build_mask_augment(config: Any, explainer: Any, **overrides: Any) -> ExplanationMaskAugment:
    """The :class:`~exaug.ExplanationMaskAugment` that a run's config describes: its masking rule and routing.

    The one place that turns a config into the augment, shared by the trainer and by the evaluation (which
    shows what training did with an image). The routing mode follows the method: ``"exconb"`` when the registered
    method adds background negatives, ``"excon"`` otherwise (also for methods that never mask).

    Args:
        config: a :class:`~exaug.training.TrainConfig` (or any object with its masking fields).
        explainer: a registered name, an :class:`~exaug.explainers.Explainer` or a callable.
        **overrides: further constructor arguments (``explainer_options``, ``enabled``, ``cache``).
    """
    from .registry import get_method

    negatives = getattr(get_method(config.method), "background_negatives", False)
    return ExplanationMaskAugment(
        explainer=explainer,
        mode="exconb" if negatives else "excon",
        threshold=config.mask_threshold,
        keep_fraction=config.keep_fraction,
        fill=config.mask_fill,
        target=config.mask_target,
        **overrides,
    )


class ContrastiveMethod(TrainingMethod):
    """Algorithm 1: each epoch an encoder epoch (contrastive loss on two views), a classifier epoch, validation.

    Attributes:
        background_negatives: ExConB: wrongly classified masks join the batch as background negatives
            (:class:`~exaug.losses.ExConBLoss`, augment mode ``"exconb"``); otherwise SupCon's loss.
        contrastive_loss: the loss module, built in :meth:`setup`.
        augment: the :class:`~exaug.ExplanationMaskAugment`, enabled on the epochs that explain.
    """

    background_negatives: ClassVar[bool] = False
    print_keys = ("encoder_loss", "classifier_loss", "val_top1", "masked_correct", "background_per_batch",
                  "saliency_cache_hits")

    @classmethod
    def validate_config(cls, config: Any) -> None:
        refresh = config.saliency_refresh_epochs
        if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 1:
            raise ValueError(f"saliency_refresh_epochs must be an int >= 1, got {refresh!r}")
        if config.exp_start_epoch < 0:
            raise ValueError(f"exp_start_epoch must be >= 0, got {config.exp_start_epoch}")

    def setup(self) -> None:
        c, t = self.config, self.trainer
        gather = t.ctx.enabled
        # check_inputs=False: non-finite embeddings give a non-finite loss, which the trainer reports as
        # TrainingDiverged with epoch and step (the loss's own check raises a ValueError, a usage error for the
        # CLI); the embeddings are L2-normalised just before. It also saves the loss's host sync per step.
        if self.background_negatives:
            self.contrastive_loss: nn.Module = ExConBLoss(
                c.temperature, c.base_temperature, gather_distributed=gather, background_copies=c.background_copies,
                check_inputs=False,
            )
        else:
            self.contrastive_loss = SupConLoss(c.temperature, base_temperature=c.base_temperature,
                                               gather_distributed=gather, check_inputs=False)
        self.augment = build_mask_augment(
            c, c.explainer, explainer_options=t.explainer_options, enabled=False, cache=t.saliency_cache
        )

    def explains(self, epoch: int) -> bool:
        """Whether the encoder epoch ``epoch`` uses explanation masks."""
        return self.uses_explanations and epoch >= self.config.exp_start_epoch

    # -- schedule -------------------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict[str, Any]:
        row = self.encoder_epoch(epoch)
        row.update(self.classifier_epoch(epoch))
        row.update(self.trainer.validate())
        return row

    def metric_keys(self, epoch: int) -> tuple[str, ...]:
        return (*self.encoder_metric_keys(epoch), *CLASSIFIER_KEYS, *VALIDATION_KEYS)

    def encoder_metric_keys(self, epoch: int) -> tuple[str, ...]:
        """Row keys of :meth:`encoder_epoch` at ``epoch``."""
        keys: tuple[str, ...] = ("encoder_loss", "lr", "explanations")
        if self.explains(epoch):
            keys += EXPLANATION_KEYS
            if self.trainer.saliency_cache is not None:
                keys += ("saliency_cache_hits",)
        return keys

    # -- stages ---------------------------------------------------------------------------------------------
    def encoder_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass of the contrastive loss over the 3-view loader (encoder + projection head)."""
        t = self.trainer
        t.reseed(epoch, 0)
        t.model.train()
        self.augment.enabled = self.explains(epoch)
        cache = t.saliency_cache
        if cache is not None:
            cache.set_epoch(epoch)
            hits_before, misses_before = cache.hits, cache.misses
        loss_sum = torch.zeros((), device=t.device)
        correct = torch.zeros((), device=t.device)
        background = torch.zeros((), device=t.device)
        kept = torch.zeros((), device=t.device)
        images_seen = 0
        steps = 0
        for step, (standard, view1, view2, labels, indices) in enumerate(t.contrastive_batches(epoch)):
            loss, batch = self.contrastive_step_loss(standard, view1, view2, labels, indices)
            t.optimizer_step(t.encoder_optimizer, loss, epoch, step)
            loss_sum += loss.detach()
            if batch.correct is not None:
                correct += batch.correct.sum()
                kept += batch.keep.float().mean(dim=(1, 2, 3)).sum()
                background += batch.background.sum()
            images_seen += labels.shape[0]
            steps += 1
        lr = t.encoder_optimizer.param_groups[0]["lr"]
        t.encoder_scheduler.step()
        row = {"encoder_loss": t.all_mean(loss_sum, steps), "lr": lr, "explanations": self.augment.enabled}
        if self.augment.enabled:
            n = t.all_sum(torch.tensor(float(images_seen), device=t.device))
            row["masked_correct"] = t.all_sum(correct) / max(n, 1.0)
            row["kept_area"] = t.all_sum(kept) / max(n, 1.0)
            row["background_per_batch"] = t.all_sum(background) / max(steps * t.ctx.world_size, 1)
            if cache is not None:
                # Fraction of this epoch's explained rows served from the cache (all ranks).
                hits = t.all_sum(torch.tensor(float(cache.hits - hits_before), device=t.device))
                misses = t.all_sum(torch.tensor(float(cache.misses - misses_before), device=t.device))
                row["saliency_cache_hits"] = hits / max(hits + misses, 1.0)
        return row

    def contrastive_step_loss(
        self, standard: Tensor, view1: Tensor, view2: Tensor, labels: Tensor, indices: Tensor | None = None
    ) -> tuple[Tensor, AugmentedBatch]:
        """Loss of one encoder step (augmentation, projection, SupCon or ExConB loss); no optimiser step.

        Shape:
            standard, view1, view2: ``(B, C, H, W)`` on the device; labels, indices: ``(B,)``.

        Args:
            standard: the un-augmented views (what is explained).
            view1, view2: the two random views.
            labels: class indices.
            indices: positions of the images in the training split; required when the saliency cache is on
                (``saliency_refresh_epochs`` > 1).

        Returns:
            ``(loss, batch)``: the scalar loss (local anchors against the global batch under torchrun) and the
            :class:`~exaug.AugmentedBatch` it was computed on.
        """
        t = self.trainer
        batch = self.augment(standard, (view1, view2), labels, t.classifier_model, indices)
        with t.autocast():
            embeddings = t.contrastive_forward(batch.images.contiguous(memory_format=t.memory_format))
        # Re-normalise in float32: under bf16/fp16 autocast the unit norm holds only to ~1e-2.
        features = batch.as_views(F.normalize(embeddings.float(), dim=1))
        if self.background_negatives:
            return self.contrastive_loss(features, batch.labels, batch.background), batch
        return self.contrastive_loss(features, batch.labels), batch

    def classifier_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass of the linear classifier on frozen encoder features (SupContrast's ``main_linear``)."""
        t = self.trainer
        t.reseed(epoch, 1)
        t.model.encoder.eval()  # frozen features, BatchNorm statistics untouched
        t.classifier.train()
        loss_sum = torch.zeros((), device=t.device)
        hits = torch.zeros((), device=t.device)
        seen = 0
        steps = 0
        for step, (images, labels) in enumerate(t.single_batches(epoch, "classifier")):
            with torch.no_grad(), t.autocast():
                features = t.model.encoder(images)
            logits = t.linear_forward(features.float())
            loss = F.cross_entropy(logits, labels)
            t.optimizer_step(t.classifier_optimizer, loss, epoch, step)
            loss_sum += loss.detach()
            hits += (logits.argmax(1) == labels).sum()
            seen += labels.shape[0]
            steps += 1
        lr = t.classifier_optimizer.param_groups[0]["lr"]
        t.classifier_scheduler.step()
        total = t.all_sum(torch.tensor(float(seen), device=t.device))
        return {"classifier_loss": t.all_mean(loss_sum, steps), "train_top1": 100.0 * t.all_sum(hits) / max(total, 1.0),
                "classifier_lr": lr}


@register_method("supcon", "SupCon, Algorithm 1 (encoder epoch, then classifier epoch, every epoch)")
class SupCon(ContrastiveMethod):
    """SupCon on two random views, Algorithm 1 schedule."""


@register_method("supcon_ori", "SupCon, classic two-stage (all encoder epochs, then all classifier epochs)")
class TwoStageSupCon(ContrastiveMethod):
    """``epochs`` encoder epochs, then ``classifier_epochs`` (default: ``epochs``) classifier epochs, each of
    the latter validated."""

    @classmethod
    def total_epochs(cls, config: Any) -> int:
        return config.epochs + (config.classifier_epochs or config.epochs)

    def classifier_schedule_epochs(self) -> int:
        return self.config.classifier_epochs or self.config.epochs

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        if epoch < self.config.epochs:
            return self.encoder_epoch(epoch)
        row = self.classifier_epoch(epoch)
        row.update(self.trainer.validate())
        return row

    def metric_keys(self, epoch: int) -> tuple[str, ...]:
        if epoch < self.config.epochs:
            return self.encoder_metric_keys(epoch)
        return (*CLASSIFIER_KEYS, *VALIDATION_KEYS)


@register_method("excon", "ExCon: Algorithm 1 with explanation-masked positives")
class ExCon(ContrastiveMethod):
    """Saliency-masked views replace a random view when the masked image is still classified correctly."""

    uses_explanations = True


@register_method("exconb", "ExConB: ExCon with wrongly classified masks as background negatives")
class ExConB(ContrastiveMethod):
    """ExCon plus the wrongly classified masks as background negatives of every anchor."""

    uses_explanations = True
    background_negatives = True
