"""``cgc``: cross-entropy plus contrastive Grad-CAM consistency across crops and flips (seed 003, NOTES §6)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...augment import ReplayableSpatial
from ...explainers import resolve_layer
from ...explainers.base import find_default_cam_layer
from ...losses import CGCLoss, cgc_heatmaps
from .cross_entropy import JointMethod
from .registry import register_method

__all__ = ["CGC"]


@register_method("cgc", "cross-entropy + contrastive Grad-CAM consistency across crops and flips")
class CGC(JointMethod):
    """CE terms + ``cgc_lambda`` x :class:`~exaug.losses.CGCLoss` between the replayed-transformed Grad-CAM of each
    image and the Grad-CAM of its augmented view; options ``cgc_*``.

    Extra row keys: ``ce_loss`` and ``cgc_loss`` (``encoder_loss = ce_loss + cgc_lambda * cgc_loss``).

    Attributes:
        cgc_layer_name: the resolved Grad-CAM layer (dotted path in the classifier model).
    """

    print_keys = ("encoder_loss", "classifier_loss", "val_top1", "cgc_loss")

    @classmethod
    def validate_config(cls, config: Any) -> None:
        if not config.cgc_lambda >= 0:
            raise ValueError(f"cgc_lambda must be >= 0, got {config.cgc_lambda}")
        if not config.cgc_temperature > 0:
            raise ValueError(f"cgc_temperature must be positive, got {config.cgc_temperature}")

    def setup(self) -> None:
        c, t = self.config, self.trainer
        # check_inputs=False: NaN maps give a NaN loss, which the trainer reports as TrainingDiverged (with epoch
        # and step) instead of the loss's ValueError; it also saves the loss's host sync.
        self.cgc_loss = CGCLoss(c.cgc_temperature, gather_distributed=t.ctx.enabled, check_inputs=False)
        self.cgc_transform = ReplayableSpatial(scale=(0.08, 1.0))
        if c.cgc_layer is None:
            # The encoder's last feature map (layer4 for ResNets), found with one eval-mode forward.
            probe = torch.zeros(2, 3, t.image_size, t.image_size, device=t.device)
            name = find_default_cam_layer(t.classifier_model, probe)
        else:
            name = c.cgc_layer
        self.cgc_layer_name, self.cgc_layer = resolve_layer(t.classifier_model, name)

    def extra_metric_keys(self, epoch: int) -> tuple[str, ...]:
        return ("ce_loss", "cgc_loss")

    def step_loss(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """CE terms + ``cgc_lambda`` * CGC between the replayed-transformed map of each image and its view's map.

        The training view plays CGC's "original"; its augmented view is a replayable crop (scale 0.08-1) + flip.
        Both maps explain the class predicted on the original and keep their graph (second order). CE terms: the
        mean of the original's and the augmented view's CE, or only the original's with ``cgc_unlabeled``.

        Shape:
            images: ``(B, C, H, W)``; labels: ``(B,)``; the returned logits: ``(B, K)``.
        """
        c, t = self.config, self.trainer
        params = self.cgc_transform.sample(images)
        augmented = self.cgc_transform.apply(images, params).contiguous(memory_format=t.memory_format)
        with t.autocast():
            maps, logits, predicted = cgc_heatmaps(t.joint_forward, self.cgc_layer, images)
            aug_maps, aug_logits, _ = cgc_heatmaps(t.joint_forward, self.cgc_layer, augmented, predicted)
        cgc = self.cgc_loss(self.cgc_transform.apply(maps.float(), params), aug_maps.float())
        ce = F.cross_entropy(logits.float(), labels)
        if not c.cgc_unlabeled:
            ce = 0.5 * (ce + F.cross_entropy(aug_logits.float(), labels))
        return ce + c.cgc_lambda * cgc, logits, {"ce_loss": ce.detach(), "cgc_loss": cgc.detach()}
