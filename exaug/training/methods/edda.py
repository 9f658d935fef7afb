"""``edda``: cross-entropy with EDDA occlusions mixed into each batch (seed 002, NOTES §6).

From ``edda_start_epoch`` on, the first ``edda_ratio * B`` images of each (shuffled) batch get
:class:`~exaug.augment.EDDAAugment` copies: the salient region occluded (a lower-confidence target) and the
non-salient region occluded (the label), trained with soft-target cross-entropy next to the clean images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...augment import EDDAAugment
from .cross_entropy import JointMethod
from .registry import register_method

__all__ = ["EDDA"]


@register_method("edda",
                 "cross-entropy with EDDA occlusions (salient -> lower-confidence target, non-salient -> label)")
class EDDA(JointMethod):
    """``ce`` plus EDDA copies of part of each batch; options ``edda_*`` (and the shared ``explainer``,
    ``explainer_layer``, ``explainer_options``, ``mask_fill``, ``mask_target``).

    Extra row keys from ``edda_start_epoch`` on: ``edda_rows`` (occluded rows per step) and ``clean_loss`` (the
    cross-entropy of the clean images alone).
    """

    @classmethod
    def validate_config(cls, config: Any) -> None:
        if config.edda_start_epoch < 0:
            raise ValueError(f"edda_start_epoch must be >= 0, got {config.edda_start_epoch}")
        if not 0.0 <= config.edda_ratio <= 1.0:
            raise ValueError(f"edda_ratio must be in [0, 1], got {config.edda_ratio}")
        if not 0.0 < config.edda_fraction <= 0.5:
            raise ValueError(f"edda_fraction must be in (0, 0.5], got {config.edda_fraction}")
        for name in ("edda_confidence", "edda_confidence_scale"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(config, name)}")

    def setup(self) -> None:
        c = self.config
        self.edda_augment = EDDAAugment(
            explainer=c.explainer,
            salient_fraction=c.edda_fraction,
            target=c.edda_target,  # type: ignore[arg-type]
            policy=c.edda_policy,  # type: ignore[arg-type]
            fill=c.mask_fill,  # type: ignore[arg-type]
            confidence=c.edda_confidence,
            confidence_scale=c.edda_confidence_scale,
            explain=c.mask_target,  # type: ignore[arg-type]
            explainer_options=self.trainer.explainer_options,
        )

    def occluded_images(self, batch_size: int, epoch: int) -> int:
        """How many images of a batch of ``batch_size`` get EDDA copies at ``epoch``."""
        return int(round(self.config.edda_ratio * batch_size)) if epoch >= self.config.edda_start_epoch else 0

    def extra_metric_keys(self, epoch: int) -> tuple[str, ...]:
        # Training batches are full (drop_last), so every step has batch_size images.
        return ("edda_rows", "clean_loss") if self.occluded_images(self.config.batch_size, epoch) else ()

    def step_loss(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """CE on the batch plus EDDA copies of its first ``edda_ratio * B`` images, soft-target cross-entropy.

        The loader shuffles, so the first images are a random subset. Clean and occluded rows share one forward
        (one set of BatchNorm statistics), and every row weighs the same in the mean.

        Shape:
            images: ``(B, C, H, W)``; labels: ``(B,)``; the returned logits: ``(B, K)`` (clean rows only).
        """
        n = self.occluded_images(images.shape[0], epoch)
        if n == 0:
            return super().step_loss(images, labels, epoch)
        t = self.trainer
        batch = self.edda_augment(images[:n], labels[:n], t.classifier_model)
        b = images.shape[0]
        inputs = torch.cat((images, batch.images)).contiguous(memory_format=t.memory_format)
        with t.autocast():
            logits = t.joint_forward(inputs).float()
        targets = torch.cat((F.one_hot(labels, logits.shape[1]).to(logits.dtype), batch.targets.to(logits.dtype)))
        loss = F.cross_entropy(logits, targets)
        rows = torch.tensor(float(batch.num_rows), device=t.device)
        return loss, logits[:b], {"edda_rows": rows, "clean_loss": F.cross_entropy(logits[:b].detach(), labels)}
