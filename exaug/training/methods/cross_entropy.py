"""Joint methods: encoder and linear classifier trained together by one optimiser, cross-entropy style.

:class:`JointMethod` is the epoch driver of the family (one pass over single random views, then validation);
a member only overrides :meth:`JointMethod.step_loss`. ``ce`` is the plain member; ``edda`` and ``cgc`` extend
the step (:mod:`.edda`, :mod:`.cgc`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import VALIDATION_KEYS, TrainingMethod
from .registry import register_method

__all__ = ["CrossEntropy", "JointMethod"]


class JointMethod(TrainingMethod):
    """Encoder + classifier trained jointly: each epoch one pass with :meth:`step_loss`, then validation.

    Row keys: ``encoder_loss`` (mean step loss), ``train_top1`` (of the clean images), ``lr``, the extra scalars of
    :meth:`step_loss` averaged over steps and ranks (declared by :meth:`extra_metric_keys`), ``val_top1`` and
    ``val_loss``.
    """

    joint = True

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        row = self.train_epoch(epoch)
        row.update(self.trainer.validate())
        return row

    def metric_keys(self, epoch: int) -> tuple[str, ...]:
        return ("encoder_loss", "train_top1", "lr", *self.extra_metric_keys(epoch), *VALIDATION_KEYS)

    def extra_metric_keys(self, epoch: int) -> tuple[str, ...]:
        """Names of the extra scalars :meth:`step_loss` returns at ``epoch`` (none for plain cross-entropy)."""
        return ()

    def step_loss(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Loss of one step; no optimiser step.

        Args:
            images: ``(B, C, H, W)`` random views on the device.
            labels: ``(B,)`` class indices.
            epoch: the current epoch (0-based), for methods that switch on at a start epoch.

        Returns:
            ``(loss, logits, extras)``: the scalar loss, the ``(B, K)`` logits of the clean images (for
            ``train_top1``) and extra scalar tensors to average into the row. Here: cross-entropy.
        """
        with self.trainer.autocast():
            logits = self.trainer.joint_forward(images)
        return F.cross_entropy(logits.float(), labels), logits, {}

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One training pass over the single-view loader with :meth:`step_loss` (the row without validation)."""
        t = self.trainer
        t.reseed(epoch, 0)
        t.classifier_model.train()
        loss_sum = torch.zeros((), device=t.device)
        hits = torch.zeros((), device=t.device)
        extras_sum: dict[str, Tensor] = {}
        seen = 0
        steps = 0
        for step, (images, labels) in enumerate(t.single_batches(epoch, self.name)):
            loss, logits, extras = self.step_loss(images, labels, epoch)
            t.optimizer_step(t.encoder_optimizer, loss, epoch, step)
            # Running sums stay on the device: one host sync per epoch, not per step.
            loss_sum += loss.detach()
            hits += (logits.argmax(1) == labels).sum()
            for key, value in extras.items():
                extras_sum[key] = extras_sum.get(key, 0.0) + value.detach().float()
            seen += labels.shape[0]
            steps += 1
        lr = t.encoder_optimizer.param_groups[0]["lr"]
        t.encoder_scheduler.step()
        total = t.all_sum(torch.tensor(float(seen), device=t.device))
        row = {"encoder_loss": t.all_mean(loss_sum, steps), "train_top1": 100.0 * t.all_sum(hits) / max(total, 1.0),
               "lr": lr}
        row.update({key: t.all_mean(value, steps) for key, value in extras_sum.items()})
        return row


@register_method("ce", "cross-entropy, encoder and classifier jointly")
class CrossEntropy(JointMethod):
    """Plain cross-entropy on one random view per image (the ``ce`` baseline)."""
