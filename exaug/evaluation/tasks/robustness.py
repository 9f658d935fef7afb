"""Calibration (ECE clean, under FGSM and under corruptions) and adversarial robustness (FGSM, PGD)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ...metrics import CORRUPTIONS, Accuracy, AdversarialAccuracy, CalibrationError, corrupt, plot_reliability
from ...metrics.base import normalisation, predict
from ..context import EvalBatch, EvalContext
from .base import EvaluationTask, as_tuple
from .registry import register_task

__all__ = ["AdversarialTask", "CalibrationTask"]


@register_task("calibration")
class CalibrationTask(EvaluationTask):
    """Expected calibration error and accuracy: clean, under FGSM and under each corruption."""

    options = {"n_bins": 10, "fgsm_eps": 4 / 255, "corruptions": tuple(CORRUPTIONS), "severity": 3}

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        settings["corruptions"] = as_tuple(settings["corruptions"])
        unknown = [c for c in settings["corruptions"] if c not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; valid: {', '.join(CORRUPTIONS)}")
        conditions = ["clean", "fgsm", *settings["corruptions"]]
        self.ece = {c: CalibrationError(settings["n_bins"]) for c in conditions}
        self.acc = {c: Accuracy(ks=(1,)) for c in conditions}

    def _add(self, condition: str, logits: Tensor, labels: Tensor) -> None:
        self.ece[condition].update(logits, labels)
        self.acc[condition].update(logits, labels)

    def update(self, batch: EvalBatch) -> None:
        ctx = self.ctx
        self._add("clean", batch.logits, batch.labels)
        self._add("fgsm", batch.fgsm_logits(self.settings["fgsm_eps"]), batch.labels)
        m, s = normalisation(ctx.mean, ctx.std, batch.images)
        pixels = (batch.images * s + m).clamp(0, 1)
        for name in self.settings["corruptions"]:
            # A different noise draw per batch (seed + batch number), the same for every run evaluated.
            corrupted = (corrupt(pixels, name, self.settings["severity"], seed=ctx.seed + batch.number) - m) / s
            self._add(name, predict(ctx.model, corrupted), batch.labels)

    def finish(self) -> dict[str, Any]:
        corruptions = {name: {"ece": self.ece[name].compute(), "accuracy": self.acc[name].compute()[1]}
                       for name in self.settings["corruptions"]}
        out: dict[str, Any] = {
            "ece_clean": self.ece["clean"].compute(), "accuracy_clean": self.acc["clean"].compute()[1],
            "ece_fgsm": self.ece["fgsm"].compute(), "accuracy_fgsm": self.acc["fgsm"].compute()[1],
            "corruptions": corruptions,
        }
        if corruptions:
            out["ece_corrupted_mean"] = sum(c["ece"] for c in corruptions.values()) / len(corruptions)
            out["accuracy_corrupted_mean"] = sum(c["accuracy"] for c in corruptions.values()) / len(corruptions)
        return out

    def figures(self, out: Path) -> dict[str, str]:
        eps = f"{self.settings['fgsm_eps'] * 255:g}/255"
        plot_reliability(self.ece["clean"].bins(), out / "reliability.png",
                         title=f"clean: ECE = {self.ece['clean'].compute():.4f}")
        plot_reliability(self.ece["fgsm"].bins(), out / "reliability_fgsm.png",
                         title=f"FGSM eps {eps}: ECE = {self.ece['fgsm'].compute():.4f}")
        return {"reliability": "reliability.png", "reliability_fgsm": "reliability_fgsm.png"}


@register_task("adversarial")
class AdversarialTask(EvaluationTask):
    """Top-1 accuracy clean, under FGSM and under PGD (pixel-space L-infinity ``eps``)."""

    options = {"eps": 4 / 255, "pgd_alpha": 1 / 255, "pgd_steps": 10, "pgd_random_start": True}

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        o = settings
        self.clean = Accuracy(ks=(1,))
        self.fgsm = Accuracy(ks=(1,))
        self.pgd = AdversarialAccuracy(ctx.model, "pgd", eps=o["eps"], alpha=o["pgd_alpha"], steps=o["pgd_steps"],
                                       random_start=o["pgd_random_start"], seed=ctx.seed, mean=ctx.mean, std=ctx.std)

    def update(self, batch: EvalBatch) -> None:
        self.clean.update(batch.logits, batch.labels)
        self.fgsm.update(batch.fgsm_logits(self.settings["eps"]), batch.labels)
        self.pgd.update(batch.images, batch.labels)

    def finish(self) -> dict[str, Any]:
        return {"clean": self.clean.compute()[1], "fgsm": self.fgsm.compute()[1], "pgd": self.pgd.compute()}
