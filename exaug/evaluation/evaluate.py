"""``evaluate_run``: the metrics of :mod:`exaug.metrics` on a trained run folder, in one batched pass.

The run is loaded with :func:`exaug.training.load_run`; its split is read once with the standard view (resize +
normalise, as validation saw it) and every selected metric is updated on each batch, so shared work (clean
logits, FGSM images) is done once. The numbers are exactly those of the metric classes
(:class:`~exaug.metrics.Accuracy`, :class:`~exaug.metrics.DropIncrease`, ...) fed the same batches: this module
only schedules them, collects the results and writes them.

Outputs, in ``out`` (default ``<run>/eval``):

* ``eval.json``: every number, the settings that produced it, the run's identity and the package versions;
* ``eval.md``: the same as readable tables, with the figures linked;
* figures: ``saliency_grid.png`` (originals, saliency overlay and masked view with its ExCon/ExConB routing,
  like the ExCon paper's Figure 1), ``reliability.png`` / ``reliability_fgsm.png``, ``tsne.png`` and
  ``insertion_deletion.png``.

The model is never modified: every call goes through the metrics' isolation (eval mode, the user's ``.grad``
hidden and restored, no autograd unless an input or layer gradient is needed).
"""

from __future__ import annotations

import abc
import copy
import difflib
import functools
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..augment import ExplanationMaskAugment
from ..data import dataset_stats
from ..explainers import Explainer, create_explainer, explainer_uses_layer
from ..metrics import (
    CORRUPTIONS,
    Accuracy,
    AdversarialAccuracy,
    CalibrationError,
    ContentHeatmap,
    DropIncrease,
    Infidelity,
    InsertionDeletion,
    compute_embeddings,
    corrupt,
    fgsm,
    knn_accuracy,
    plot_reliability,
    plot_tsne,
)
from ..metrics.base import normalisation, predict
from ..training.loaders import validation_on_test_subset
from ..training.run import TrainedRun, load_run
from ..transforms import unnormalize
from ._report import fmt, md_table, versions, write_json, write_text

__all__ = [
    "DEFAULT_OPTIONS",
    "EXPLANATION_METRICS",
    "METRICS",
    "evaluate_run",
    "object_masks",
    "plot_saliency_grid",
    "render_eval_markdown",
    "resolve_metrics",
    "resolve_options",
]

#: Metric names accepted by ``evaluate_run(metrics=...)`` and ``exaug evaluate --metrics``, in report order.
METRICS: tuple[str, ...] = (
    "accuracy",
    "drop_increase",
    "infidelity",
    "insertion_deletion",
    "content_heatmap",
    "calibration",
    "adversarial",
    "tsne",
)
#: Metrics that need the explainer.
EXPLANATION_METRICS: tuple[str, ...] = ("drop_increase", "infidelity", "insertion_deletion", "content_heatmap")

#: Per-metric settings (override any of them with ``evaluate_run(options={"infidelity": {...}})``). ``None`` for
#: ``drop_increase.fill`` and ``accuracy.knn_train_samples`` means "as the run was trained" (its ``mask_fill`` and
#: ``train_samples``). ``grid`` configures the saliency-grid figure.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "accuracy": {"ks": (1, 5), "knn_k": 20, "knn_temperature": 0.07, "knn_train_samples": None},
    "drop_increase": {"keep_fractions": (0.15, 0.30, 0.45), "fill": None},
    "infidelity": {"perturbation": "gaussian", "noise_std": 0.003, "n_perturb_samples": 10, "normalize": False,
                   "output": "logit"},
    "insertion_deletion": {"steps": 50, "baseline": "blur", "batch_size": 512},
    "content_heatmap": {"target": "label"},
    "calibration": {"n_bins": 10, "fgsm_eps": 4 / 255, "corruptions": tuple(CORRUPTIONS), "severity": 3},
    "adversarial": {"eps": 4 / 255, "pgd_alpha": 1 / 255, "pgd_steps": 10, "pgd_random_start": True},
    "tsne": {"max_images": 500, "max_classes": 5, "perplexity": 30.0},
    "grid": {"images": 8},
}


def _as_tuple(value: Any) -> tuple[Any, ...]:
    """A list option given as one value or a comma-separated string (``--option``) -> a tuple."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def resolve_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a metric selection: ``"all"``, ``"a,b,c"`` or a sequence of names.

    Returns:
        The selected names, deduplicated, in the order of :data:`METRICS`.

    Raises:
        ValueError: empty selection or unknown name (with the closest valid one).
    """
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m).strip() for m in metrics]
    names = [m for m in names if m]
    if not names:
        raise ValueError(f"no metric selected; choose 'all' or some of: {', '.join(METRICS)}")
    if "all" in names:
        return METRICS
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}.{_suggest(name, METRICS)} "
                             f"Valid metrics: all, {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)


def resolve_options(options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """:data:`DEFAULT_OPTIONS` updated with ``options`` (unknown metric or option names raise with a suggestion)."""
    merged = copy.deepcopy(DEFAULT_OPTIONS)
    for section, values in (options or {}).items():
        if section not in merged:
            raise ValueError(f"unknown options section {section!r}.{_suggest(section, list(merged))} "
                             f"Valid sections: {', '.join(merged)}")
        for key, value in values.items():
            if key not in merged[section]:
                valid = list(merged[section])
                raise ValueError(f"unknown {section} option {key!r}.{_suggest(key, valid)} Valid: {', '.join(valid)}")
            merged[section][key] = value
    return merged


# -- data helpers ---------------------------------------------------------------------------------------------------
def _unwrap(dataset: Dataset, indices: Sequence[int]) -> tuple[Dataset, list[int]]:
    """The innermost dataset under ``Subset`` wrappers and the indices of ``indices`` in it."""
    indices = list(indices)
    while isinstance(dataset, Subset):
        indices = [int(dataset.indices[i]) for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def object_masks(dataset: Dataset, indices: Sequence[int], size: tuple[int, int]) -> Tensor | None:
    """Ground-truth object masks of samples ``indices`` of ``dataset``, or ``None`` when it has none.

    Works through ``Subset`` wrappers (as built by :func:`exaug.training.loaders.build_eval_dataset`) down to a
    dataset with a ``mask(i)`` method: :class:`~exaug.data.SyntheticShapes` (exact object masks) and
    :class:`~exaug.data.TinyImageNet` (bounding boxes as masks; all False where the box is unknown).

    Args:
        dataset: the evaluated dataset.
        indices: positions in ``dataset``.
        size: ``(H, W)`` of the model's input; masks of another size are resized (nearest), as the standard view
            resizes the images.

    Returns:
        ``(B, 1, H, W)`` bool, or ``None``.
    """
    base, inner = _unwrap(dataset, indices)
    mask_of = getattr(base, "mask", None)
    if not callable(mask_of):
        return None
    if not inner:
        return torch.zeros(0, 1, *size, dtype=torch.bool)
    masks = torch.stack([torch.as_tensor(mask_of(i)) for i in inner])
    masks = masks.reshape(len(inner), 1, *masks.shape[-2:])  # (1, H, W) or (H, W) per sample -> (B, 1, H, W)
    if tuple(masks.shape[-2:]) != tuple(size):
        masks = torch.nn.functional.interpolate(masks.float(), size=size, mode="nearest") > 0.5
    return masks.bool()


def _class_names(dataset: Dataset) -> list[str] | None:
    base, _ = _unwrap(dataset, [])
    names = getattr(base, "class_names", None) or getattr(base, "classes", None)
    return [str(n) for n in names] if names is not None else None


def _resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a CUDA device without CUDA is a usage error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"invalid device {str(device)!r}: {err}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use --device cpu")
    return resolved


# -- per-batch state ------------------------------------------------------------------------------------------------
class _Context:
    """What every metric task needs: the run, its networks, the explainer and the settings."""

    def __init__(self, run: TrainedRun, explainer: Explainer | None, dataset: Dataset, options: dict[str, Any],
                 *, seed: int, batch_size: int, device: torch.device, progress: bool) -> None:
        self.run = run
        self.model: nn.Module = run.classifier_model
        self.encoder: nn.Module = run.classifier_model.encoder
        self.explainer = explainer
        self.dataset = dataset
        self.options = options
        self.seed = seed
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.mean, self.std = dataset_stats(run.config.dataset)
        self.notes: list[str] = []
        self.augment: ExplanationMaskAugment | None = None
        if explainer is not None:
            # The run's own masking rule and routing, so the figures show what training did with these images.
            c = run.config
            self.augment = ExplanationMaskAugment(
                explainer, mode="exconb" if c.method == "exconb" else "excon", threshold=c.mask_threshold,
                keep_fraction=c.keep_fraction, fill=c.mask_fill, target=c.mask_target,
            )

    def loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.run.config.workers,
                          pin_memory=self.device.type == "cuda")

    def bar(self, iterable: Any, desc: str, total: int | None = None) -> Any:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit="batch", leave=False, dynamic_ncols=True,
                    disable=not self.progress)


class _Batch:
    """One batch of the evaluated split with the results several metrics share, computed on first use."""

    def __init__(self, ctx: _Context, number: int, first: int, images: Tensor, labels: Tensor) -> None:
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

    def fgsm_logits(self, eps: float) -> Tensor:
        """``(B, K)`` logits of the FGSM images (true labels, pixel-space ``eps``); shared by calibration and
        adversarial robustness."""
        if eps not in self._fgsm_logits:
            adversarial = fgsm(self.ctx.model, self.images, self.labels, eps=eps, mean=self.ctx.mean, std=self.ctx.std)
            self._fgsm_logits[eps] = predict(self.ctx.model, adversarial)
        return self._fgsm_logits[eps]


# -- metric tasks ---------------------------------------------------------------------------------------------------
class _Task(abc.ABC):
    """One selected metric: ``update`` per batch, ``finish`` once (numbers for eval.json), ``figures``."""

    name = ""

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx
        self.opts = ctx.options[self.name]
        self.seconds = 0.0

    @abc.abstractmethod
    def update(self, batch: _Batch) -> None:
        """Fold one batch into the metric."""

    @abc.abstractmethod
    def finish(self) -> dict[str, Any]:
        """The numbers for ``eval.json`` (Python scalars and lists)."""

    def figures(self, out: Path) -> dict[str, str]:
        """Write this metric's figures into ``out``; returns ``{figure name: file name}``."""
        return {}


class _AccuracyTask(_Task):
    name = "accuracy"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self.opts["ks"] = _as_tuple(self.opts["ks"])
        self.metric = Accuracy(ks=self.opts["ks"])
        self.feats: list[Tensor] = []
        self.labels: list[Tensor] = []
        if self.opts["knn_train_samples"] is None:
            self.opts["knn_train_samples"] = ctx.run.config.train_samples

    def update(self, batch: _Batch) -> None:
        self.metric.update(batch.logits, batch.labels)
        self.feats.append(compute_embeddings(self.ctx.encoder, batch.images, self.ctx.batch_size))
        self.labels.append(batch.labels)

    def finish(self) -> dict[str, Any]:
        ctx = self.ctx
        out: dict[str, Any] = {f"top{k}": value for k, value in self.metric.compute().items()}
        bank = ctx.run.dataset("train", self.opts["knn_train_samples"])
        bank_feats, bank_labels = [], []
        for images, labels in ctx.bar(ctx.loader(bank), "kNN bank (train split)"):
            bank_feats.append(compute_embeddings(ctx.encoder, images.to(ctx.device), ctx.batch_size))
            bank_labels.append(labels.to(ctx.device))
        out["knn_top1"] = float(knn_accuracy(
            torch.cat(bank_feats), torch.cat(bank_labels), torch.cat(self.feats), torch.cat(self.labels),
            k=self.opts["knn_k"], temperature=self.opts["knn_temperature"], num_classes=ctx.run.num_classes,
        ))
        out["knn_train_images"] = len(bank)  # type: ignore[arg-type]
        return out


class _DropIncreaseTask(_Task):
    name = "drop_increase"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        if self.opts["fill"] is None:
            self.opts["fill"] = ctx.run.config.mask_fill
        self.opts["keep_fractions"] = _as_tuple(self.opts["keep_fractions"])
        self.metric = DropIncrease(ctx.explainer, ctx.model, self.opts["keep_fractions"], self.opts["fill"])

    def update(self, batch: _Batch) -> None:
        self.metric.update(batch.images)

    def finish(self) -> dict[str, Any]:
        scores = self.metric.compute()
        return {"keep": {_q(q): values for q, values in scores.items()}, "n_flat": int(self.metric.n_flat)}


class _InfidelityTask(_Task):
    name = "infidelity"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self.metric = Infidelity(ctx.explainer, ctx.model, seed=ctx.seed, **self.opts)

    def update(self, batch: _Batch) -> None:
        self.metric.update(batch.images)

    def finish(self) -> dict[str, Any]:
        return {"mean": self.metric.compute()}


class _InsertionDeletionTask(_Task):
    name = "insertion_deletion"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self.metric = InsertionDeletion(ctx.explainer, ctx.model, **self.opts)
        self.result: dict[str, Any] = {}

    def update(self, batch: _Batch) -> None:
        self.metric.update(batch.images)

    def finish(self) -> dict[str, Any]:
        res = self.metric.compute()
        self.result = {"insertion_auc": res["insertion"]["auc"], "deletion_auc": res["deletion"]["auc"],
                       "x": res["x"], "insertion_curve": res["insertion"]["curve"],
                       "deletion_curve": res["deletion"]["curve"]}
        return self.result

    def figures(self, out: Path) -> dict[str, str]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3.6), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for mode, colour in (("insertion", "tab:green"), ("deletion", "tab:red")):
            auc = self.result[f"{mode}_auc"]
            ax.plot(self.result["x"], self.result[f"{mode}_curve"], color=colour, label=f"{mode} (AUC {auc:.3f})")
        ax.set_xlabel("fraction of pixels inserted / deleted (by saliency)")
        ax.set_ylabel("probability of the explained class")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "insertion_deletion.png")
        return {"insertion_deletion": "insertion_deletion.png"}


class _ContentHeatmapTask(_Task):
    name = "content_heatmap"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        if self.opts["target"] not in ("label", "predicted"):
            raise ValueError(f"content_heatmap target must be 'label' or 'predicted', got {self.opts['target']!r}")
        self.metric = ContentHeatmap()
        self.skipped_images = 0

    def update(self, batch: _Batch) -> None:
        masks = object_masks(self.ctx.dataset, batch.indices, tuple(batch.images.shape[-2:]))
        assert masks is not None  # the task is only created for datasets with masks
        # Tiny ImageNet images with an unknown box have an empty mask: they cannot be scored.
        known = masks.flatten(1).any(dim=1)
        self.skipped_images += int((~known).sum())
        if not bool(known.any()):
            return
        rows = known.to(batch.images.device)
        images, labels, masks = batch.images[rows], batch.labels[rows], masks[known]
        targets = labels if self.opts["target"] == "label" else None
        saliency = self.ctx.explainer.explain(images, targets).saliency  # type: ignore[union-attr]
        self.metric.update(saliency, masks.to(saliency.device))

    def finish(self) -> dict[str, Any]:
        if self.metric.count == 0:
            raise ValueError("no evaluated image has a known object mask / box, so the Content Heatmap is undefined")
        return {"mean": self.metric.compute(), "images": self.metric.count, "images_without_mask": self.skipped_images}


class _CalibrationTask(_Task):
    name = "calibration"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self.opts["corruptions"] = _as_tuple(self.opts["corruptions"])
        unknown = [c for c in self.opts["corruptions"] if c not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; valid: {', '.join(CORRUPTIONS)}")
        n_bins = self.opts["n_bins"]
        conditions = ["clean", "fgsm", *self.opts["corruptions"]]
        self.ece = {c: CalibrationError(n_bins) for c in conditions}
        self.acc = {c: Accuracy(ks=(1,)) for c in conditions}

    def _add(self, condition: str, logits: Tensor, labels: Tensor) -> None:
        self.ece[condition].update(logits, labels)
        self.acc[condition].update(logits, labels)

    def update(self, batch: _Batch) -> None:
        ctx = self.ctx
        self._add("clean", batch.logits, batch.labels)
        self._add("fgsm", batch.fgsm_logits(self.opts["fgsm_eps"]), batch.labels)
        m, s = normalisation(ctx.mean, ctx.std, batch.images)
        pixels = (batch.images * s + m).clamp(0, 1)
        for name in self.opts["corruptions"]:
            # A different noise draw per batch (seed + batch number), the same for every run evaluated.
            corrupted = (corrupt(pixels, name, self.opts["severity"], seed=ctx.seed + batch.number) - m) / s
            self._add(name, predict(ctx.model, corrupted), batch.labels)

    def finish(self) -> dict[str, Any]:
        corruptions = {name: {"ece": self.ece[name].compute(), "accuracy": self.acc[name].compute()[1]}
                       for name in self.opts["corruptions"]}
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
        eps = f"{self.opts['fgsm_eps'] * 255:g}/255"
        plot_reliability(self.ece["clean"].bins(), out / "reliability.png",
                         title=f"clean: ECE = {self.ece['clean'].compute():.4f}")
        plot_reliability(self.ece["fgsm"].bins(), out / "reliability_fgsm.png",
                         title=f"FGSM eps {eps}: ECE = {self.ece['fgsm'].compute():.4f}")
        return {"reliability": "reliability.png", "reliability_fgsm": "reliability_fgsm.png"}


class _AdversarialTask(_Task):
    name = "adversarial"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        o = self.opts
        self.clean = Accuracy(ks=(1,))
        self.fgsm = Accuracy(ks=(1,))
        self.pgd = AdversarialAccuracy(ctx.model, "pgd", eps=o["eps"], alpha=o["pgd_alpha"], steps=o["pgd_steps"],
                                       random_start=o["pgd_random_start"], seed=ctx.seed, mean=ctx.mean, std=ctx.std)

    def update(self, batch: _Batch) -> None:
        self.clean.update(batch.logits, batch.labels)
        self.fgsm.update(batch.fgsm_logits(self.opts["eps"]), batch.labels)
        self.pgd.update(batch.images, batch.labels)

    def finish(self) -> dict[str, Any]:
        return {"clean": self.clean.compute()[1], "fgsm": self.fgsm.compute()[1], "pgd": self.pgd.compute()}


class _TsneTask(_Task):
    name = "tsne"

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx)
        self.original: list[Tensor] = []
        self.views: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.embedded = 0
        self.correct = 0
        self.kept = 0.0
        self.count = 0

    def update(self, batch: _Batch) -> None:
        assert self.ctx.augment is not None
        views = self.ctx.augment(batch.images, (batch.images, batch.images), batch.labels, self.ctx.model)
        assert views.masked is not None and views.correct is not None and views.keep is not None
        self.correct += int(views.correct.sum())
        self.kept += float(views.keep.float().mean(dim=(1, 2, 3)).sum())
        self.count += batch.images.shape[0]
        take = min(batch.images.shape[0], self.opts["max_images"] - self.embedded)
        if take > 0:
            self.original.append(compute_embeddings(self.ctx.encoder, batch.images[:take], self.ctx.batch_size))
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
                      max_classes=self.opts["max_classes"], perplexity=self.opts["perplexity"], seed=self.ctx.seed,
                      title="encoder features: x original, o explanation-masked view")
        except (ImportError, ValueError) as err:  # scikit-learn missing, or too few points of the shown classes
            self.ctx.notes.append(f"t-SNE figure not drawn: {err}")
            return {}
        return {"tsne": "tsne.png"}


_TASKS: dict[str, type[_Task]] = {t.name: t for t in (_AccuracyTask, _DropIncreaseTask, _InfidelityTask,
                                                      _InsertionDeletionTask, _ContentHeatmapTask, _CalibrationTask,
                                                      _AdversarialTask, _TsneTask)}


def _q(q: float) -> str:
    """JSON key of a keep fraction: ``0.3`` -> ``"0.3"`` (``repr`` of the float, so keys round-trip)."""
    return repr(float(q))


# -- figures --------------------------------------------------------------------------------------------------------
def plot_saliency_grid(
    originals: Tensor,
    saliency: Tensor,
    masked: Tensor,
    correct: Tensor,
    labels: Tensor,
    predicted: Tensor,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    wrong_label: str = "background",
) -> Path:
    """The ExCon paper's Figure 1 style grid: one column per image, rows original / saliency / masked view.

    Args:
        originals: ``(N, 3, H, W)`` pixels in ``[0, 1]``.
        saliency: ``(N, 1, H, W)`` maps in ``[0, 1]``.
        masked: ``(N, 3, H, W)`` masked views, pixels in ``[0, 1]``.
        correct: ``(N,)`` bool, whether the masked view was classified as its label (routing: positive).
        labels: ``(N,)`` true labels (titles of the first row).
        predicted: ``(N,)`` predictions on the originals (titles of the second row).
        path: PNG to write.
        class_names: names of the classes (default: indices).
        wrong_label: what a wrong masked view becomes (``"background"`` for ExConB, ``"dropped"`` for ExCon).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def name(c: int) -> str:
        return (class_names[c] if class_names is not None and c < len(class_names) else str(c))[:12]

    n = originals.shape[0]
    fig = Figure(figsize=(1.35 * n + 0.6, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, n, squeeze=False)
    for i in range(n):
        image = originals[i].permute(1, 2, 0).numpy()
        axes[0, i].imshow(image)
        axes[0, i].set_title(name(int(labels[i])), fontsize=8)
        axes[1, i].imshow(image)
        axes[1, i].imshow(saliency[i, 0].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[1, i].set_title(f"pred {name(int(predicted[i]))}", fontsize=7)
        axes[2, i].imshow(masked[i].permute(1, 2, 0).numpy())
        ok = bool(correct[i])
        axes[2, i].set_title("positive" if ok else wrong_label, fontsize=8, color="green" if ok else "red")
        for row in range(3):
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
    for row, text in enumerate(("original", "saliency", "masked view")):
        axes[row, 0].set_ylabel(text, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _saliency_grid(ctx: _Context, batch: _Batch, out: Path) -> dict[str, str]:
    assert ctx.augment is not None
    n = min(int(ctx.options["grid"]["images"]), batch.images.shape[0])
    if n < 1:
        return {}
    images, labels = batch.images[:n], batch.labels[:n]
    views = ctx.augment(images, (images, images), labels, ctx.model)
    assert views.masked is not None and views.saliency is not None and views.correct is not None

    def pixels(x: Tensor) -> Tensor:
        return unnormalize(x, ctx.mean, ctx.std).clamp(0, 1).cpu()

    plot_saliency_grid(
        pixels(images), views.saliency.cpu(), pixels(views.masked), views.correct.cpu(), labels.cpu(),
        batch.logits[:n].argmax(dim=1).cpu(), out / "saliency_grid.png", class_names=_class_names(ctx.dataset),
        wrong_label="background" if ctx.augment.mode == "exconb" else "dropped",
    )
    return {"saliency_grid": "saliency_grid.png"}


# -- the entry point ------------------------------------------------------------------------------------------------
def _build_explainer(run: TrainedRun, name: str | None, layer: str | None) -> tuple[Explainer, dict[str, Any]]:
    """The run's explainer (its name, layer and options from config.json) or ``name`` at the run's layer."""
    own = name is None or name == run.config.explainer
    name = run.config.explainer if name is None else name
    options = dict(run.config.explainer_options) if own else {}
    if layer is None and "target_layer" not in options and explainer_uses_layer(name):
        layer = _resolved(run).get("explainer_layer")
    explainer = create_explainer(name, run.classifier_model, target_layer=layer, **options)
    info = {"name": name, "target_layer": explainer.layer_name if explainer.uses_layer else None,
            "options": {k: v for k, v in options.items() if k != "target_layer"}, "own": own}
    return explainer, info


def _resolved(run: TrainedRun) -> dict[str, Any]:
    """The ``resolved`` settings of the run's ``config.json`` (the explainer layer training actually used)."""
    path = run.folder / "config.json"
    return json.loads(path.read_text()).get("resolved", {}) if path.is_file() else {}


def evaluate_run(
    folder: str | Path | TrainedRun,
    metrics: str | Sequence[str] = "all",
    explainer: str | None = None,
    split: str = "test",
    samples: int | None = None,
    out: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    *,
    checkpoint: str = "best",
    explainer_layer: str | None = None,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    held_out: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a trained run and write ``eval.json``, ``eval.md`` and figures.

    Args:
        folder: a run folder written by :class:`~exaug.training.Trainer`, or an already loaded
            :class:`~exaug.training.TrainedRun` (then ``checkpoint`` and ``device`` are ignored).
        metrics: ``"all"``, ``"a,b,c"`` or a list of names from :data:`METRICS`.
        explainer: a registered explainer name; default: the run's own explainer, layer and options
            (``config.json``). Another name is used at the run's resolved layer when it takes one.
        split: ``"test"`` or ``"train"`` (read with the standard view: resize + normalise).
        samples: evaluate a seeded, class-balanced subset of this many images (``None``: the whole split).
        out: output folder (default ``<run>/eval``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"``.
        batch_size: images per batch (every metric is batched; insertion/deletion also chunks its step images).
        progress: show a tqdm progress bar over the batches.
        checkpoint: ``"best"``, ``"last"`` or a ``.pt`` path (see :func:`~exaug.training.load_run`).
        explainer_layer: override the explainer's target layer (dotted path in the encoder + classifier model).
        seed: seed of every random draw (infidelity perturbations, PGD start, noise corruptions, t-SNE).
        options: per-metric overrides of :data:`DEFAULT_OPTIONS`, e.g. ``{"infidelity": {"n_perturb_samples": 4}}``.
        held_out: leave out the test images the run validated on (and chose its best checkpoint on). ``None``
            (default): whenever the run validated on a subset of the test split (``--eval-samples``); ``True``
            requires it; ``False`` uses the whole split. Recorded as ``evaluation.held_out``.

    Returns:
        The content of ``eval.json``: ``{"run", "evaluation", "explainer", "settings", "metrics", "figures",
        "notes", "timing", "versions", "files"}``. Accuracies are fractions in ``[0, 1]``.

    Raises:
        FileNotFoundError: ``folder`` is not a run folder.
        ValueError: unknown metric, option, explainer or split, or invalid ``samples`` / ``batch_size``.
        exaug.utils.checkpoint.CheckpointError: missing or corrupt checkpoint.
    """
    selected = resolve_metrics(metrics)
    opts = resolve_options(options)
    if explainer is not None:
        explainer_uses_layer(explainer)  # fails fast, with the closest name, before anything is loaded
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise ValueError(f"samples must be a positive int or None, got {samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    started = time.time()
    if isinstance(folder, TrainedRun):
        run, checkpoint = folder, "in-memory"
        dev = next(run.classifier_model.parameters()).device
    else:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"run folder {str(folder)!r} does not exist")
        dev = _resolve_device(device)
        run = load_run(folder, checkpoint=checkpoint, device=dev)
    out_dir = Path(out) if out is not None else run.folder / "eval"
    if held_out is None:
        held_out = split == "test" and validation_on_test_subset(run.config)
    dataset = run.dataset(split, samples, held_out=held_out)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"split {split!r} of {run.config.dataset!r} is empty")

    needs_explainer = any(m in EXPLANATION_METRICS or m == "tsne" for m in selected)
    explainer_obj, explainer_info = (_build_explainer(run, explainer, explainer_layer) if needs_explainer
                                     else (None, None))
    ctx = _Context(run, explainer_obj, dataset, opts, seed=seed, batch_size=batch_size, device=dev,
                   progress=progress)
    active = list(selected)
    if "content_heatmap" in active and object_masks(dataset, [0], (run.image_size, run.image_size)) is None:
        active.remove("content_heatmap")
        ctx.notes.append(f"content_heatmap skipped: the {run.config.dataset!r} dataset provides no object masks or "
                         "boxes (synthetic and tinyimagenet do)")
    if "accuracy" in active and split == "train":
        ctx.notes.append("kNN accuracy on the train split: the kNN bank contains the evaluated images themselves")
    tasks = [_TASKS[name](ctx) for name in active]

    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    loader = ctx.loader(dataset)
    first = 0
    for number, (images, labels) in enumerate(ctx.bar(loader, f"evaluate {run.folder.name}", total=len(loader))):
        batch = _Batch(ctx, number, first, images, labels)
        first += images.shape[0]
        for task in tasks:
            tick = time.perf_counter()
            task.update(batch)
            task.seconds += time.perf_counter() - tick
        if number == 0 and ctx.augment is not None:
            figures.update(_saliency_grid(ctx, batch, out_dir))

    results: dict[str, Any] = {}
    for task in tasks:
        tick = time.perf_counter()
        try:
            results[task.name] = task.finish()
        except ValueError as err:  # e.g. no image with a known box: report it, keep the other metrics
            ctx.notes.append(f"{task.name} not computed: {err}")
            continue
        figures.update(task.figures(out_dir))
        task.seconds += time.perf_counter() - tick

    c = run.config
    payload: dict[str, Any] = {
        "run": {"folder": str(run.folder), "method": c.method, "seed": c.seed, "dataset": c.dataset,
                "model": c.model, "width": c.width, "epochs": c.epochs, "checkpoint": checkpoint,
                "checkpoint_epoch": run.epoch, "num_classes": run.num_classes, "image_size": run.image_size},
        "evaluation": {"metrics": list(selected), "split": split, "samples": samples,
                       "images": len(dataset), "batch_size": batch_size, "device": str(dev),  # type: ignore[arg-type]
                       "seed": seed, "held_out": held_out},
        "explainer": explainer_info,
        "settings": {name: _jsonable(opts[name]) for name in (*active, *(["grid"] if ctx.augment else []))},
        "metrics": results,
        "figures": figures,
        "notes": ctx.notes,
        "timing": {"total_seconds": time.time() - started, **{t.name: t.seconds for t in tasks}},
        "versions": versions(),
        "files": {"json": "eval.json", "markdown": "eval.md"},
    }
    write_json(out_dir / "eval.json", payload)
    write_text(out_dir / "eval.md", render_eval_markdown(payload))
    return payload


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


# -- Markdown -------------------------------------------------------------------------------------------------------
def _eps(value: float) -> str:
    return f"{value * 255:g}/255"


def render_eval_markdown(result: Mapping[str, Any]) -> str:
    """``eval.md`` from the content of ``eval.json`` (so a report can be re-rendered without re-evaluating)."""
    r, e, m, s = result["run"], result["evaluation"], result["metrics"], result["settings"]
    ex = result.get("explainer")
    lines = [f"# Evaluation of `{Path(r['folder']).name}`", ""]
    explained = "" if ex is None else f", explainer `{ex['name']}`" + (
        f" at `{ex['target_layer']}`" if ex.get("target_layer") else "")
    lines += [
        f"Method **{r['method']}** (seed {r['seed']}), {r['dataset']} / {r['model']} x{r['width']}, checkpoint "
        f"`{r['checkpoint']}` (after epoch {r['checkpoint_epoch']} of {r['epochs']}). Split `{e['split']}`, "
        f"{e['images']} images{' not used for validation' if e.get('held_out') else ''}{explained}. Evaluated on {e['device']} in {result['timing']['total_seconds']:.1f} s "
        f"(seed {e['seed']}).",
        "",
    ]
    if "accuracy" in m:
        a, o = m["accuracy"], s["accuracy"]
        rows = [[f"top-{k} (%)", fmt(a.get(f"top{k}"), 2, scale=100)] for k in o["ks"]]
        rows.append([f"kNN top-1 (%) (k={o['knn_k']}, T={o['knn_temperature']}, {a['knn_train_images']} train images)",
                     fmt(a["knn_top1"], 2, scale=100)])
        lines += ["## Accuracy", "", "Linear classifier on the encoder; kNN on encoder features.", "",
                  *md_table(["metric", "value"], rows), ""]
    explanation = [k for k in EXPLANATION_METRICS if k in m]
    if explanation:
        lines += ["## Explanation quality", ""]
    if "drop_increase" in m:
        d = m["drop_increase"]
        rows = [[f"{float(q):.2f}", fmt(v["drop_percent"]), fmt(v["drop_mag"]), fmt(v["increase_percent"]),
                 fmt(v["increase_mag"])] for q, v in d["keep"].items()]
        lines += [f"Drop / increase (keep the most salient fraction, fill `{s['drop_increase']['fill']}`; "
                  f"{d['n_flat']} flat maps). Drop lower, increase higher is better.", "",
                  *md_table(["keep", "drop %", "drop mag", "increase %", "increase mag"], rows), ""]
    rows = []
    if "infidelity" in m:
        o = s["infidelity"]
        rows.append([f"infidelity ({o['perturbation']}, std {o['noise_std']}, {o['n_perturb_samples']} draws, "
                     f"{o['output']}, normalize={o['normalize']})", "lower", fmt(m["infidelity"]["mean"], 3,
                                                                                 scientific=True)])
    if "insertion_deletion" in m:
        o = s["insertion_deletion"]
        rows.append([f"insertion AUC ({o['steps']} steps, baseline {o['baseline']})", "higher",
                     fmt(m["insertion_deletion"]["insertion_auc"], 4)])
        rows.append([f"deletion AUC ({o['steps']} steps, baseline {o['baseline']})", "lower",
                     fmt(m["insertion_deletion"]["deletion_auc"], 4)])
    if "content_heatmap" in m:
        rows.append([f"Content Heatmap (saliency of the {s['content_heatmap']['target']} class, "
                     f"{m['content_heatmap']['images']} images)", "higher", fmt(m["content_heatmap"]["mean"], 4)])
    if rows:
        lines += [*md_table(["metric", "better", "value"], rows), ""]
    if "calibration" in m:
        cal, o = m["calibration"], s["calibration"]
        rows = [["clean", fmt(cal["accuracy_clean"], 2, scale=100), fmt(cal["ece_clean"], 4)],
                [f"FGSM eps {_eps(o['fgsm_eps'])}", fmt(cal["accuracy_fgsm"], 2, scale=100), fmt(cal["ece_fgsm"], 4)]]
        rows += [[f"{name} (severity {o['severity']})", fmt(v["accuracy"], 2, scale=100), fmt(v["ece"], 4)]
                 for name, v in cal["corruptions"].items()]
        if cal["corruptions"]:
            rows.append(["corruptions, mean", fmt(cal["accuracy_corrupted_mean"], 2, scale=100),
                         fmt(cal["ece_corrupted_mean"], 4)])
        lines += ["## Calibration", "",
                  f"Expected calibration error, {o['n_bins']} equal-width bins (lower is better).", "",
                  *md_table(["condition", "accuracy (%)", "ECE"], rows), ""]
    if "adversarial" in m:
        adv, o = m["adversarial"], s["adversarial"]
        rows = [["clean", fmt(adv["clean"], 2, scale=100)],
                [f"FGSM eps {_eps(o['eps'])}", fmt(adv["fgsm"], 2, scale=100)],
                [f"PGD eps {_eps(o['eps'])}, step {_eps(o['pgd_alpha'])}, {o['pgd_steps']} steps",
                 fmt(adv["pgd"], 2, scale=100)]]
        lines += ["## Adversarial robustness", "", *md_table(["attack", "accuracy (%)"], rows), ""]
    if "tsne" in m:
        t = m["tsne"]
        lines += ["## Masked views", "",
                  f"With the run's masking rule, {fmt(t['masked_correct'], 1, scale=100)}% of the masked views "
                  f"are classified correctly (positives); they keep {fmt(t['kept_area'], 1, scale=100)}% of the "
                  f"pixels on average. The t-SNE shows {t['images']} originals and their masked views.", ""]
    figures = result.get("figures", {})
    captions = {
        "saliency_grid": "Originals (true class), saliency overlay (of the class the run's masking explains, its "
                         "`mask_target`; title: the prediction on the original), masked view with its routing: "
                         "green = classified correctly (a positive), red = misclassified (a background negative in "
                         "ExConB, dropped in ExCon).",
        "reliability": "Reliability diagram, clean images.",
        "reliability_fgsm": "Reliability diagram under FGSM.",
        "insertion_deletion": "Mean insertion and deletion curves.",
        "tsne": "t-SNE of encoder features: crosses are originals, dots their explanation-masked views.",
    }
    if figures:
        lines += ["## Figures", ""]
        for key, file in figures.items():
            lines += [f"![{key}]({file})", "", captions.get(key, ""), ""]
    if result.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines).rstrip("\n") + "\n"
