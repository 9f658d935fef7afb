"""The model-parameter randomisation sanity check (Adebayo et al. 2018) of the evaluation's explainer, on the
first ``images`` evaluated images, with the similarity curve as a figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ...metrics import ModelParameterRandomisation
from ...utils.checks import positive_int
from ..context import EvalBatch, EvalContext
from ..output import fmt, md_table
from .base import EvaluationTask, as_tuple
from .localisation import explained_targets
from .registry import register_task

__all__ = ["RandomisationTask", "plot_randomisation"]


def _finite(values: list[float]) -> list[float | None]:
    """NaN (no image had a defined similarity at a step) -> ``None``, so ``eval.json`` stays plain JSON."""
    return [None if v is None or math.isnan(v) else v for v in values]


def plot_randomisation(result: Mapping[str, Any], path: str | Path) -> Path:
    """The mean similarity to the original maps after each randomisation step, one line per measure.

    Example:
        >>> import tempfile
        >>> result = {"steps": ["fc", "block2"], "measures": ["spearman"], "spearman": [0.4, None]}
        >>> plot_randomisation(result, Path(tempfile.mkdtemp()) / "r.png").read_bytes()[:4] == b"\\x89PNG"
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = ["original", *result["steps"]]
    fig = Figure(figsize=(max(4.0, 0.6 * len(steps) + 1.5), 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for measure in result["measures"]:
        values = [1.0, *(math.nan if v is None else v for v in result[measure])]
        ax.plot(range(len(steps)), values, marker="o", label=measure)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(steps)), steps, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("similarity to the original map")
    ax.set_title("Cascading randomisation from the top (lower: the map depends on the weights)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


@register_task("randomisation")
class RandomisationTask(EvaluationTask):
    """Model-parameter randomisation sanity check: map similarity while layers are randomised from the top."""

    options = {"images": 16, "depth": 2, "order": "cascading", "measures": ("spearman", "ssim"), "seed": None,
               "target": "label"}
    requires = frozenset({"explainer"})
    measures_explanations = True

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        self.target = explained_targets(settings, self.name)
        settings["images"] = positive_int("randomisation images", settings["images"])
        settings["measures"] = as_tuple(settings["measures"])
        if settings["seed"] is None:
            settings["seed"] = ctx.seed
        settings["depth"] = positive_int("randomisation depth", settings["depth"], allow_none=True)
        self.metric = ModelParameterRandomisation(
            ctx.explainer, ctx.model, depth=settings["depth"],  # type: ignore[arg-type]
            order=settings["order"], measures=settings["measures"], seed=int(settings["seed"]))
        self.result: dict[str, Any] = {}

    def update(self, batch: EvalBatch) -> None:
        # The check costs one explanation per step and image: it runs on the first ``images`` images only.
        room = self.settings["images"] - int(self.metric.count)
        if room <= 0:
            return
        images, labels = batch.images[:room], batch.labels[:room]
        self.metric.update(images, labels if self.target == "label" else None)

    def finish(self) -> dict[str, Any]:
        raw = self.metric.compute()
        measures = list(self.settings["measures"])
        self.result = {"steps": list(self.metric.steps), "measures": measures,
                       **{m: _finite(raw[m]) for m in measures}, "undefined": raw["undefined"],
                       "images": raw["images"]}
        return self.result

    def figures(self, out: Path) -> dict[str, str]:
        plot_randomisation(self.result, out / "randomisation.png")
        return {"randomisation": "randomisation.png"}

    @classmethod
    def markdown(cls, result: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
        """One row per randomisation step with the mean similarity of each measure."""
        measures = result["measures"]
        rows = [[f"{i + 1}. {step}", *(fmt(result[m][i], 3) for m in measures)]
                for i, step in enumerate(result["steps"])]
        return ["## Randomisation sanity check", "",
                f"Model-parameter randomisation (Adebayo et al. 2018), {settings.get('order', 'cascading')} from "
                f"the top, on {result['images']} images: the mean similarity of each map to its original after "
                "each step (lower is better: a map that survives random weights does not explain the trained "
                "model; a model-free map stays at 1). Measures: Spearman rank correlation and SSIM.", "",
                *md_table(["randomised (top first)", *measures], rows), ""]
