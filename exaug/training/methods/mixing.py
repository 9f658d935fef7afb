"""The mixing family as joint (cross-entropy) methods: ``cutmix``, ``mixup``, ``saliencymix``, ``keepcutout``,
``keepautoaugment``, ``attentive_cutmix``, ``snapmix`` and ``sgt`` (issue #14).

Each step applies the method's :mod:`exaug.augment` module to the batch (with probability ``prob``, the papers'
per-batch coin) and trains on soft-target cross-entropy of the mixed images (``sgt``: CE + ``lam`` KL on the
clean and masked images). Saliency comes from the model being trained (``trainer.classifier_model``, eval mode,
untouched) unless the explainer is model-free. Options are plugin options (``--method-options``) with the papers'
defaults; ``explainer`` takes any registered name (``"random"``: the random-box control).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...augment import (AttentiveCutMix, CutMix, KeepAutoAugment, KeepCutout, MixAugment, Mixup, SaliencyGuidedMask,
                        SaliencyMix, SnapMix, sgt_loss)
from ...explainers import is_explainer
from .base import MethodOption
from .cross_entropy import JointMethod
from .registry import register_method

__all__ = ["MixMethod", "CutMixMethod", "MixupMethod", "SaliencyMixMethod", "KeepCutoutMethod",
           "KeepAutoAugmentMethod", "AttentiveCutMixMethod", "SnapMixMethod", "SGTMethod"]


def _prob(default: float) -> MethodOption:
    return MethodOption(default, "probability that a batch is augmented", lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def _alpha(default: float) -> MethodOption:
    return MethodOption(default, "Beta(alpha, alpha) parameter", lambda v: isinstance(v, (int, float)) and v > 0,
                        "a positive number")


def _explainer(default: str) -> MethodOption:
    return MethodOption(default, "saliency backend (a registered name or 'random')",
                        lambda v: v == "random" or is_explainer(v), "a registered explainer name or 'random'")


def _positive_int(default: int, help: str) -> MethodOption:
    return MethodOption(default, help, lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                        "a positive int")


class MixMethod(JointMethod):
    """Cross-entropy on batches mixed by :meth:`build_augment`'s module with probability ``prob``."""

    def setup(self) -> None:
        self.augment = self.build_augment(self.trainer.data.num_classes)

    def build_augment(self, num_classes: int) -> MixAugment:
        """The method's augment with its options (subclasses)."""
        raise TypeError(f"{type(self).__name__} must define build_augment")

    def step_loss(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Soft-target cross-entropy of the mixed batch (plain CE when the coin says no).

        Shape:
            images: ``(B, C, H, W)``; labels: ``(B,)``; the returned logits: ``(B, K)`` (of the trained images).
        """
        t = self.trainer
        # The papers' per-batch coin, from the global RNG the trainer reseeds each epoch (resume-exact).
        if float(torch.rand(())) >= self.option("prob"):
            return super().step_loss(images, labels, epoch)
        batch = self.augment(images, labels, t.classifier_model)
        with t.autocast():
            logits = t.joint_forward(batch.images.contiguous(memory_format=t.memory_format)).float()
        return F.cross_entropy(logits, batch.targets), logits, {}


@register_method("cutmix", "cross-entropy with CutMix (random box, area-mixed labels)")
class CutMixMethod(MixMethod):
    options = {"prob": _prob(0.5), "alpha": _alpha(1.0)}

    def build_augment(self, num_classes: int) -> MixAugment:
        return CutMix(num_classes, alpha=self.option("alpha"))


@register_method("mixup", "cross-entropy with Mixup (pixel blend, lam-mixed labels)")
class MixupMethod(MixMethod):
    options = {"prob": _prob(1.0), "alpha": _alpha(1.0)}

    def build_augment(self, num_classes: int) -> MixAugment:
        return Mixup(num_classes, alpha=self.option("alpha"))


@register_method("saliencymix", "cross-entropy with SaliencyMix (box centred on the partner's saliency peak)")
class SaliencyMixMethod(MixMethod):
    options = {"prob": _prob(0.5), "alpha": _alpha(1.0), "explainer": _explainer("spectral_residual"),
               "peak": MethodOption("sample", "'sample' or 'batch' (official: one peak per batch)",
                                    lambda v: v in ("sample", "batch"), "'sample' or 'batch'")}

    def build_augment(self, num_classes: int) -> MixAugment:
        return SaliencyMix(num_classes, self.option("explainer"), alpha=self.option("alpha"), peak=self.option("peak"))


def _keep_options() -> dict[str, MethodOption]:
    return {"prob": _prob(1.0), "explainer": _explainer("saliency"), "length": _positive_int(16, "box side"),
            "threshold": MethodOption(0.6, "saliency threshold", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "trials": _positive_int(10, "candidate boxes per image"),
            "low_resolution": MethodOption(False, "explain at half resolution", lambda v: isinstance(v, bool),
                                           "true or false")}


@register_method("keepcutout", "cross-entropy with KeepAugment Cutout (the cut avoids the salient region)")
class KeepCutoutMethod(MixMethod):
    options = _keep_options()

    def build_augment(self, num_classes: int) -> MixAugment:
        return KeepCutout(num_classes, self.option("explainer"), length=self.option("length"),
                          threshold=self.option("threshold"), trials=self.option("trials"),
                          low_resolution=self.option("low_resolution"))


@register_method("keepautoaugment", "cross-entropy with KeepAugment AutoAugment (salient box pasted back)")
class KeepAutoAugmentMethod(MixMethod):
    options = {**_keep_options(), "policy_groups": _positive_int(8, "AutoAugment draws per batch")}

    def build_augment(self, num_classes: int) -> MixAugment:
        d = self.trainer.data
        return KeepAutoAugment(num_classes, self.option("explainer"), length=self.option("length"),
                               threshold=self.option("threshold"), trials=self.option("trials"),
                               low_resolution=self.option("low_resolution"), mean=d.mean, std=d.std,
                               policy_groups=self.option("policy_groups"))


@register_method("attentive_cutmix", "cross-entropy with Attentive CutMix (top-k saliency grid cells pasted)")
class AttentiveCutMixMethod(MixMethod):
    options = {"prob": _prob(1.0), "explainer": _explainer("gradcam"), "grid": _positive_int(7, "cells per side"),
               "top_k": _positive_int(6, "cells pasted")}

    @classmethod
    def check_method_options(cls, config: Any) -> None:
        super().check_method_options(config)
        opts = {k: config.method_options.get(k, cls.options[k].default) for k in ("grid", "top_k")}
        if opts["top_k"] > opts["grid"] ** 2:
            raise ValueError(f"method_options['top_k'] must be at most grid**2 = {opts['grid'] ** 2}")

    def build_augment(self, num_classes: int) -> MixAugment:
        return AttentiveCutMix(num_classes, self.option("explainer"), grid=self.option("grid"),
                               top_k=self.option("top_k"))


@register_method("snapmix", "cross-entropy with SnapMix (asymmetric boxes, saliency-mass label weights)")
class SnapMixMethod(MixMethod):
    options = {"prob": _prob(1.0), "alpha": _alpha(5.0), "explainer": _explainer("gradcam"),
               "normalize_weights": MethodOption(False, "rescale the two label weights to sum 1",
                                                 lambda v: isinstance(v, bool), "true or false")}

    def build_augment(self, num_classes: int) -> MixAugment:
        return SnapMix(num_classes, self.option("explainer"), alpha=self.option("alpha"),
                       normalize_weights=self.option("normalize_weights"))


@register_method("sgt", "saliency-guided training: CE + lambda KL(f(x) || f(x with low-saliency pixels randomised))")
class SGTMethod(MixMethod):
    """Row keys add ``ce_loss`` and ``kl_loss``."""

    options = {"fraction": MethodOption(0.1, "share of least salient pixels masked", lambda v: 0.0 <= v <= 1.0,
                                        "in [0, 1]"),
               "lam": MethodOption(1.0, "weight of the KL term", lambda v: v >= 0, ">= 0"),
               "explainer": _explainer("saliency")}

    def build_augment(self, num_classes: int) -> MixAugment:
        return SaliencyGuidedMask(num_classes, self.option("explainer"), fraction=self.option("fraction"))

    def extra_metric_keys(self, epoch: int) -> tuple[str, ...]:
        return ("ce_loss", "kl_loss")

    def step_loss(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """CE of the clean images + ``lam`` KL to the masked images, one shared forward.

        Shape:
            images: ``(B, C, H, W)``; labels: ``(B,)``; the returned logits: ``(B, K)`` (clean rows).
        """
        t = self.trainer
        masked = self.augment(images, labels, t.classifier_model).images
        b = images.shape[0]
        with t.autocast():
            logits = t.joint_forward(torch.cat((images, masked)).contiguous(memory_format=t.memory_format)).float()
        loss, ce, kl = sgt_loss(logits[:b], logits[b:], labels, self.option("lam"))
        return loss, logits[:b], {"ce_loss": ce.detach(), "kl_loss": kl.detach()}
