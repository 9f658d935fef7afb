"""The figures and ``report.md`` of ``exaug demo``: learning curves, routing per epoch, routed masked views.

:mod:`exaug.cli.demo` trains the runs (one shared SupCon warm-up, then SupCon / ExCon / ExConB branches); this
module only reads them: the trainers' histories (one row per epoch, the keys :class:`~exaug.training.Trainer`
logs) and, for the masks figure, the ExConB trainer's networks and augment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..transforms import CROP_SCALE

__all__ = ["plot_curves", "plot_masks", "explanation_quality", "write_report", "EXPLAINED"]

#: The branches whose augment masks images (their rows carry ``masked_correct`` once explanations start).
EXPLAINED = ("excon", "exconb")
#: How the report describes each ``mask_fill`` (:data:`exaug.augment.masking.FILLS`).
FILL_WORDS = {"zero": "set to the dataset mean", "mean": "set to the image's mean colour",
              "blur": "replaced by a Gaussian blur of the image", "noise": "replaced by noise"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, also on machines with a display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(warmup: list[dict[str, Any]], branches: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Validation top-1 of the warm-up and each branch, and the share of masks classified correctly per epoch.

    Args:
        warmup: the warm-up's rows (epochs ``0 .. W-1``).
        branches: method -> the branch's rows (epochs ``W ..``).
        path: the PNG to write.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (top1, masks) = plt.subplots(1, 2, figsize=(9, 3.4))
    warm_x = [r["epoch"] + 1 for r in warmup]
    top1.plot(warm_x, [r.get("val_top1") for r in warmup], color="black", marker="o", label="warm-up (supcon)")
    for method, rows in branches.items():
        # Each branch line starts at the warm-up's last point, so the figure reads as one tree.
        x = warm_x[-1:] + [r["epoch"] + 1 for r in rows]
        y = [warmup[-1].get("val_top1")] if warmup else []
        top1.plot(x, y + [r.get("val_top1") for r in rows], marker="o", label=method)
        if method in EXPLAINED:
            masks.plot([r["epoch"] + 1 for r in rows], [100.0 * r["masked_correct"] for r in rows], marker="o",
                       label=method, color=top1.lines[-1].get_color())
    top1.set(title="validation top-1 (%)", xlabel="epoch")
    masks.set(title="masked images classified correctly (%)", xlabel="epoch", ylim=(0, 100))
    for ax in (top1, masks):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def _routed_batch(trainer: Any, limit: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Up to ``limit`` validation images, their labels and the ExConB augment's routed batch of them."""
    images, labels = [], []
    for batch_images, batch_labels in trainer.data.val_batches(trainer.device, torch.contiguous_format):
        images.append(batch_images)
        labels.append(batch_labels)
        if sum(len(x) for x in labels) >= limit:
            break
    x, y = torch.cat(images)[:limit], torch.cat(labels)[:limit]
    aug = trainer.augment
    enabled = aug.enabled
    aug.enabled = True  # the figure shows what training does once explanations are on
    try:
        with torch.enable_grad():  # Grad-CAM differentiates the classifier
            routed = aug(x, (x, x), y, trainer.classifier_model)
    finally:
        aug.enabled = enabled
    return x, y, routed


def plot_masks(trainer: Any, path: Path, class_names: list[str], per_outcome: int = 4) -> tuple[Path, int, int]:
    """Validation images routed by the ExConB model: ``per_outcome`` positives beside ``per_outcome`` backgrounds.

    Each column shows the original, its Grad-CAM map for the true class and the masked image. The left group was
    classified correctly (the masked image replaces a random view as a positive), the right group was not
    (ExConB adds it as a background negative). When the first validation images hold fewer of one outcome, that
    group has fewer columns and its heading says so.

    Returns:
        ``(path, positives shown, backgrounds shown)``.
    """
    from ..transforms import unnormalize

    plt = _pyplot()
    images, labels, routed = _routed_batch(trainer, limit=256)
    correct = routed.correct
    groups = {"positive": torch.nonzero(correct).flatten()[:per_outcome].tolist(),
              "background": torch.nonzero(~correct).flatten()[:per_outcome].tolist()}
    mean, std = trainer.data.mean, trainer.data.std
    originals = unnormalize(images, mean, std).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    masked = unnormalize(routed.masked, mean, std).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    saliency = routed.saliency[:, 0].cpu().numpy()
    columns = 2 * per_outcome + 1  # one empty column separates the two groups
    fig, axes = plt.subplots(3, columns, figsize=(1.3 * columns, 4.6))
    for ax in axes.flat:
        ax.axis("off")
    for g, (outcome, indices) in enumerate(groups.items()):
        colour = "green" if outcome == "positive" else "red"
        first = g * (per_outcome + 1)
        heading = ("positive: masked image classified correctly" if outcome == "positive"
                   else "background: masked image misclassified")
        if len(indices) < per_outcome:
            heading += f" ({len(indices)} in {len(labels)} images)"
        axes[0, first].text(0, 1.35, heading, transform=axes[0, first].transAxes, fontsize=8, color=colour)
        for c, i in enumerate(indices):
            axes[0, first + c].imshow(originals[i])
            axes[0, first + c].set_title(class_names[int(labels[i])], fontsize=7)
            axes[1, first + c].imshow(originals[i])
            axes[1, first + c].imshow(saliency[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axes[2, first + c].imshow(masked[i])
            axes[2, first + c].set_title(outcome, fontsize=7, color=colour)
    for row, name in enumerate(("original", "Grad-CAM", "masked")):
        axes[row, 0].text(-0.15, 0.5, name, transform=axes[row, 0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=8)
    # Headings and row names sit outside the axes, where tight_layout cannot account for them.
    fig.subplots_adjust(left=0.05, right=0.99, top=0.86, bottom=0.02, wspace=0.08, hspace=0.25)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, len(groups["positive"]), len(groups["background"])


def explanation_quality(trainers: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Drop / increase rate at keep 45% of each run on its validation split (empty without the metrics package)."""
    try:
        from ..metrics import DropIncrease
    except ImportError:
        return {}
    results: dict[str, dict[str, float]] = {}
    for method, trainer in trainers.items():
        metric = DropIncrease(trainer.augment.explainer_for(trainer.classifier_model), trainer.classifier_model,
                              keep_fractions=(0.45,), fill=trainer.config.mask_fill)
        for images, _ in trainer.data.val_batches(trainer.device, torch.contiguous_format):
            metric.update(images)
        results[method] = dict(metric.compute()[0.45])
    return results


def _regime_sentence(branches: dict[str, list[dict[str, Any]]]) -> str:
    """Whether this run reached that regime: the masks classified correctly in the first explained epoch of every
    explained branch (all of them at 50 % or more)."""
    firsts = {m: 100.0 * rows[0]["masked_correct"] for m, rows in branches.items()
              if rows and "masked_correct" in rows[0]}
    if not firsts:
        return ""
    shares = " and ".join(f"{share:.0f}% ({method})" for method, share in firsts.items())
    verdict = ("so this run is in that regime" if min(firsts.values()) >= 50
               else "so this run is not yet in that regime")
    return f"Here {shares} of the masks were classified correctly in the first explained epoch, {verdict}."


def _departures(settings: dict[str, Any]) -> str:
    """The settings in which this run departs from the ExCon paper's CIFAR recipe, as one sentence (or "")."""
    parts = []
    classes = settings.get("dataset_options", {}).get("num_classes")
    if classes:
        parts.append(f"{classes} shape classes")
    crop_min = settings.get("view_crop_min", CROP_SCALE[0])  # the trainer's default is SupContrast's crop
    if crop_min != CROP_SCALE[0] or not settings.get("view_colour", True):
        colour = "" if settings.get("view_colour", True) else " without colour jitter or grayscale"
        parts.append(f"random views cropping {100 * crop_min:.0f}-100 % of the image{colour}")
    if settings.get("explainer_layer"):
        parts.append(f"Grad-CAM at `{settings['explainer_layer']}`")
    if settings.get("mask_fill", "zero") != "zero":
        parts.append(f"dropped pixels {FILL_WORDS.get(settings['mask_fill'], settings['mask_fill'])}")
    if not parts:
        return ""
    return ("Departures from the paper's recipe, so that the classifier recognises most masked images within "
            "minutes: " + "; ".join(parts) + ". ")


def _fmt(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _routing_table(warmup: list[dict[str, Any]], branches: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One row per epoch: validation top-1 of every run and the routing statistics of the explained branches."""
    explained = [m for m in branches if m in EXPLAINED]
    header = (["epoch", "stage"] + [f"{m} val top-1 (%)" for m in branches]
              + [f"{m} masks correct (%)" for m in explained]
              + (["exconb background rows / batch"] if "exconb" in branches else []))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in warmup:
        cells = [str(row["epoch"] + 1), "shared warm-up", _fmt(row.get("val_top1"))]
        cells += [""] * (len(header) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    for k in range(max((len(rows) for rows in branches.values()), default=0)):
        rows = {m: r[k] for m, r in branches.items() if k < len(r)}
        first = next(iter(rows.values()))
        cells = [str(first["epoch"] + 1), "branches"] + [_fmt(rows[m].get("val_top1")) if m in rows else ""
                                                         for m in branches]
        cells += [_fmt(100.0 * rows[m]["masked_correct"]) if m in rows and "masked_correct" in rows[m] else ""
                  for m in explained]
        if "exconb" in branches:
            cells.append(_fmt(rows["exconb"].get("background_per_batch")) if "exconb" in rows else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _comparison(summaries: dict[str, dict[str, Any]]) -> str:
    """The branches' final top-1 against SupCon's, in words, whatever the signs are."""
    base = summaries.get("supcon", {}).get("final_val_top1")
    if base is None:
        return ""
    parts = []
    for method, summary in summaries.items():
        value = summary.get("final_val_top1")
        if method == "supcon" or value is None:
            continue
        diff = value - base
        parts.append(f"{method} ends {abs(diff):.1f} points {'above' if diff >= 0 else 'below'} SupCon"
                     if abs(diff) >= 0.05 else f"{method} ends level with SupCon")
    return ("On this seed " + ", ".join(parts) + " (final validation top-1). ") if parts else ""


def write_report(out: Path, settings: dict[str, Any], warmup: list[dict[str, Any]],
                 branches: dict[str, list[dict[str, Any]]], summaries: dict[str, dict[str, Any]],
                 quality: dict[str, dict[str, float]], figures: dict[str, Path], shown: tuple[int, int],
                 seconds: float) -> Path:
    """Write ``out/report.md``: the setup, the results per branch, the routing per epoch and the figures.

    Args:
        settings: the demo's training settings (``epochs``, ``exp_start_epoch``, ``train_samples``, ...).
        warmup, branches: the rows of the warm-up and of each branch (see :func:`plot_curves`).
        summaries: method -> the branch's ``summary.json`` content.
        quality: method -> drop / increase rates (:func:`explanation_quality`), or empty.
        figures: ``"curves"`` and ``"masks"`` -> their PNG files (in ``out``).
        shown: positives and backgrounds shown in the masks figure.
        seconds: wall time of the whole demo.
    """
    warm, total = settings["exp_start_epoch"], settings["epochs"]
    size = settings.get("image_size") or 32
    lines = [
        "# exaug demo: one SupCon warm-up, then SupCon / ExCon / ExConB",
        "",
        f"Synthetic shapes ({settings['train_samples']} training / {settings['eval_samples']} validation images, "
        f"{size}x{size}), CIFAR ResNet-18 at width {settings['width']}, batch {settings['batch_size']}, the ExCon "
        f"paper's Algorithm 1. A shared SupCon warm-up trains epochs 1-{warm}; three branches continue from its "
        f"checkpoint for epochs {warm + 1}-{total} with the same data order and schedule: SupCon (no explanations), "
        f"ExCon and ExConB (Grad-CAM masks from epoch {warm + 1}). {_departures(settings)}"
        f"Seed {settings.get('seed', 0)}, total time "
        f"{seconds / 60:.1f} min.",
        "",
        "| method | final val top-1 (%) | best val top-1 (%) | masks correct, first explained epoch (%) "
        "| masks correct, last epoch (%) |" + (" drop rate (keep 45%) | increase rate (keep 45%) |" if quality else ""),
        "|---|---|---|---|---|" + ("---|---|" if quality else ""),
    ]
    for method, summary in summaries.items():
        rows = branches.get(method, [])
        first = 100.0 * rows[0]["masked_correct"] if rows and "masked_correct" in rows[0] else None
        last = 100.0 * rows[-1]["masked_correct"] if rows and "masked_correct" in rows[-1] else None
        cells = [method, _fmt(summary.get("final_val_top1")), _fmt(summary.get("best_val_top1")), _fmt(first),
                 _fmt(last)]
        if quality:
            q = quality.get(method, {})
            cells += [_fmt(q.get("drop_percent"), 3), _fmt(q.get("increase_percent"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        _comparison(summaries) + "One seed at smoke scale (minutes on a CPU): differences of a few points are "
        "within seed noise here, so read them as what this run did, not as a ranking. The ExCon paper measures its "
        "gains after 200 epochs on CIFAR-100 with ResNet-50 (`benchmarks/reproduce_cifar100.py`). ExConB's loss "
        "has background rows in its denominators, so its value is not comparable with SupCon's.",
        "",
    ]
    if quality:
        lines += ["Drop / increase rate: share of validation images whose predicted-class probability falls / "
                  "rises when only the 45% most salient pixels are kept (the ExCon paper's Drop% / Increase%; lower "
                  "drop and higher increase mean more faithful explanations).", ""]
    lines += [
        "## Routing per epoch",
        "",
        "An explained branch masks each training image with its Grad-CAM and classifies the masked image: if the "
        "classifier gets it right, it becomes a positive view; if not, ExCon falls back to a random view and ExConB "
        "also adds it as a background negative. The methods are designed for a classifier that already recognises "
        "most masked images when explanations start (the paper warms up for 50 of 200 epochs). "
        + _regime_sentence(branches),
        "",
        *_routing_table(warmup, branches),
        "",
        f"![learning curves and routing]({figures['curves'].name})",
        "",
        f"![routed masked views]({figures['masks'].name})",
        "",
        f"Validation images routed by the final ExConB model: {shown[0]} positives (left, green) and {shown[1]} "
        "backgrounds (right, red). Rows: the image and its class; Grad-CAM of the true class from the ExConB "
        "encoder + classifier; the masked image (pixels with normalised saliency <= "
        f"{settings.get('mask_threshold', 0.5)} {FILL_WORDS.get(settings.get('mask_fill', 'zero'), 'filled')}).",
        "",
        "Run folders: `warmup/` (the shared warm-up) and `supcon/`, `excon/`, `exconb/` (the branches) hold "
        "`metrics.csv`, `config.json`, `summary.json` and checkpoints; each branch's `summary.json` records the "
        "warm-up it started from (`branched_from`).",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
