"""Embedding visualisation (t-SNE of originals and their views) and training stability across seeds.

* :func:`plot_tsne`: the ExCon paper's Figure 1 style: a 2-D t-SNE of the embeddings of original images
  (crosses) and of their augmented / masked views (dots), coloured by class, for a handful of classes.
* :func:`training_stability`: the ExCon paper's "mean std of validation accuracy": for per-epoch validation
  accuracies of several seeds, the standard deviation across seeds at each epoch, averaged over the epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..utils.checks import check_images, check_labels
from .base import check_model, predict

__all__ = ["compute_embeddings", "plot_tsne", "training_stability"]


def compute_embeddings(encoder: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """``(N, D)`` embeddings of ``images`` ``(N, C, H, W)``: eval mode, no autograd, model untouched, chunked."""
    check_model(encoder)
    check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return predict(encoder, images.detach(), batch_size).flatten(1)


def plot_tsne(
    original_feats: Tensor,
    original_labels: Tensor,
    view_feats: Tensor,
    view_labels: Tensor,
    path: str | Path,
    *,
    classes: Sequence[int] | None = None,
    max_classes: int = 5,
    perplexity: float = 30.0,
    seed: int = 0,
    title: str | None = None,
) -> np.ndarray:
    """t-SNE of originals (crosses) and views (dots), saved as a PNG.

    Originals and views are embedded together (one t-SNE), after L2 normalisation, so distances between a
    cross and its dots are comparable.

    Args:
        original_feats: ``(N, D)`` embeddings of the original images.
        original_labels: ``(N,)`` int labels.
        view_feats: ``(M, D)`` embeddings of augmented / masked views.
        view_labels: ``(M,)`` int labels of the views (the label of the image each view comes from).
        path: PNG file to write (parent folders are created).
        classes: classes to show (default: the first ``max_classes`` labels present among the originals).
        max_classes: number of classes when ``classes`` is ``None``.
        perplexity: t-SNE perplexity (capped below the number of points, as scikit-learn requires).
        seed: t-SNE random state.
        title: figure title.

    Returns:
        ``(n_points, 2)`` coordinates: the selected originals first, then the selected views.

    Raises:
        ImportError: scikit-learn is not installed (``pip install exaug[tsne]``).
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:  # optional dependency
        raise ImportError("plot_tsne needs scikit-learn: pip install 'exaug[tsne]' (or scikit-learn)") from error
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for name, feats in (("original_feats", original_feats), ("view_feats", view_feats)):
        if not isinstance(feats, Tensor) or feats.dim() != 2 or feats.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty (N, D) tensor")
    if original_feats.shape[1] != view_feats.shape[1]:
        raise ValueError("original_feats and view_feats must have the same dimension")
    original_labels = check_labels(original_labels, original_feats.shape[0], "original_labels").cpu()
    view_labels = check_labels(view_labels, view_feats.shape[0], "view_labels").cpu()
    if classes is None:
        classes = torch.unique(original_labels).tolist()[:max_classes]
    classes = list(classes)
    keep_o = torch.isin(original_labels, torch.tensor(classes))
    keep_v = torch.isin(view_labels, torch.tensor(classes))
    n_o, n_v = int(keep_o.sum()), int(keep_v.sum())
    if n_o + n_v < 3:
        raise ValueError(f"need at least 3 points of the selected classes {classes}, got {n_o + n_v}")
    feats = torch.cat([original_feats.detach().float().cpu()[keep_o], view_feats.detach().float().cpu()[keep_v]])
    feats = torch.nn.functional.normalize(feats, dim=1).numpy()
    labels = torch.cat([original_labels[keep_o], view_labels[keep_v]]).numpy()
    perplexity = min(perplexity, (feats.shape[0] - 1) / 3)
    coords = TSNE(n_components=2, perplexity=max(perplexity, 1.0), init="pca", random_state=seed).fit_transform(feats)

    fig = Figure(figsize=(5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{i % 10}" for i in range(len(classes))]
    for colour, cls in zip(colours, classes):
        views = labels[n_o:] == cls
        originals = labels[:n_o] == cls
        ax.scatter(coords[n_o:][views, 0], coords[n_o:][views, 1], s=8, c=colour, alpha=0.5, marker="o")
        ax.scatter(coords[:n_o][originals, 0], coords[:n_o][originals, 1], s=60, c=colour, marker="x", label=str(cls))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(title="class (x = original, o = view)", fontsize="small")
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return coords


def training_stability(
    runs: Sequence[Sequence[float]] | Tensor | np.ndarray,
    *,
    start: int = 0,
    end: int | None = None,
    unbiased: bool = False,
) -> float:
    """Mean over epochs of the across-seed standard deviation of validation accuracy (lower is more stable).

    ``stability = mean_{e in [start, end)} std_s(acc[s, e])``, the ExCon paper's "mean std of validation
    accuracy" (Tiny ImageNet, 200 epochs: ExCon 0.63, ExConB 0.69, SupCon 0.92, accuracies in percent).

    Args:
        runs: ``S`` sequences of per-epoch validation accuracy, one per seed, all of the same length ``E``
            (``S >= 2``), or an ``(S, E)`` array. Units are kept (percent in, percent out).
        start: first epoch of the window (Python slice semantics).
        end: end of the window, exclusive (Python slice semantics).
        unbiased: ``False`` (default) divides by ``S`` (numpy's ``std``); ``True`` by ``S - 1``.

    Returns:
        The mean standard deviation.
    """
    if isinstance(runs, Tensor):
        array = runs.detach().double().cpu().numpy()
    else:
        lengths = {len(r) for r in runs}
        if len(lengths) > 1:
            raise ValueError(f"runs must all have the same number of epochs, got lengths {sorted(lengths)}")
        array = np.asarray(runs, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"runs must hold at least 2 seeds of per-epoch accuracies (S, E), got shape {array.shape}")
    window = array[:, start:end]
    if window.shape[1] == 0:
        raise ValueError(f"the epoch window [{start}, {end}) is empty for {array.shape[1]} epochs")
    if not np.isfinite(window).all():
        raise ValueError("runs contain NaN or infinite accuracies")
    return float(window.std(axis=0, ddof=1 if unbiased else 0).mean())
